"""kdbench's own components, registered through the same hooks as any plugin.

Components are registered by import path so that ``kdbench --help`` imports nothing heavy.
"""

from __future__ import annotations

from kdbench.hookspecs import hookimpl
from kdbench.registry import Register

TIMM_HELP = "Any timm model by name, e.g. timm:vit_small_patch14_dinov2.lvd142m."


@hookimpl
def kdbench_register_teachers(register: Register) -> None:
    register(
        "kdbench.world.models:shapes_teacher",
        name="shapes-teacher",
        description="Shapes world teacher: ViT, 6 blocks x 128, patch 4, 32 px.",
    )
    register("kdbench.models.backbone:timm_backbone", name="timm:*", description=TIMM_HELP)
    register(
        "kdbench.models.image_text:shapes_clip",
        name="shapes-clip",
        description="Shapes world teacher with its text tower: an image-text model.",
    )
    register(
        "kdbench.models.image_text:open_clip_model",
        name="open_clip:*",
        description="Any open_clip model, e.g. open_clip:ViT-B-16-quickgelu (pretrained=openai).",
        url="https://github.com/mlfoundations/open_clip",
    )


@hookimpl
def kdbench_register_students(register: Register) -> None:
    register(
        "kdbench.world.models:shapes_student",
        name="shapes-student",
        description="Shapes world student: ViT, 4 blocks x 64, patch 4, 32 px.",
    )
    for target, name, description in (
        ("vit:shapes_vit_xs", "shapes-vit-xs", "Shapes ViT-XS: 4 blocks x 32, patch 4, 32 px."),
        ("vit:shapes_vit_m", "shapes-vit-m", "Shapes ViT-M: 6 blocks x 96, patch 4, 32 px."),
        (
            "mobilevit:shapes_mobilevit",
            "shapes-mobilevit",
            "MobileViT-style hybrid from timm's blocks at Shapes scale: 8x8 map, 192 features.",
        ),
        (
            "resnet12:shapes_resnet12",
            "shapes-resnet12",
            "ResNet-12 (few-shot literature) at widths 16-32-64-128: 4x4 map, 128 features.",
        ),
        (
            "thriftynet:shapes_thriftynet",
            "shapes-thriftynet",
            "ThriftyNet-style recursive CNN: one 3x3 conv of 32 filters applied 10 times.",
        ),
    ):
        register(f"kdbench.models.zoo.{target}", name=name, description=description)
    register("kdbench.models.backbone:timm_backbone", name="timm:*", description=TIMM_HELP)


@hookimpl
def kdbench_register_adapters(register: Register) -> None:
    for cls, text in (
        ("LinearProbe", "Frozen backbone, linear head (teacher mode lp)."),
        ("MultiLayer", "Frozen backbone, head on the last 4 layers concatenated."),
        ("FineTune", "Every parameter trains (teacher mode ft)."),
        ("LoRA", "Low-rank updates on the attention qkv projections (r=16, alpha=16)."),
        ("SVF", "Only the singular values of the block's linear layers train."),
    ):
        name = {
            "LinearProbe": "linear",
            "MultiLayer": "multilayer",
            "FineTune": "finetune",
            "LoRA": "lora",
            "SVF": "svf",
        }[cls]
        register(f"kdbench.models.adapters:{cls}", name=name, description=text)


@hookimpl
def kdbench_register_losses(register: Register) -> None:
    register(
        "kdbench.losses.classic:CrossEntropy",
        name="ce",
        description="Cross-entropy of the student's logits against the labels.",
    )
    register(
        "kdbench.losses.classic:HintonKD",
        name="kd",
        description="Hinton KD: T²·KL between softened teacher and student predictions.",
        url="https://arxiv.org/abs/1503.02531",
    )
    register(
        "kdbench.losses.classic:FitNets",
        name="fitnets",
        description="FitNets: MSE to the teacher's features through a learned projector.",
        url="https://arxiv.org/abs/1412.6550",
    )


@hookimpl
def kdbench_register_datasets(register: Register) -> None:
    from kdbench.data import register_datasets

    register_datasets(register)


@hookimpl
def kdbench_register_methods(register: Register) -> None:
    from kdbench.methods import BUILTIN_METHODS

    for method in BUILTIN_METHODS:
        register(method, name=method.name, description=method.description, url=method.url)


@hookimpl
def kdbench_register_sensors(register: Register) -> None:
    register(
        "kdbench.device.sensors.nvml:NvmlSensor",
        name="nvml",
        description="NVIDIA GPU board energy: NVML total energy counter (Volta and newer).",
    )
    register(
        "kdbench.device.sensors.rapl:RaplSensor",
        name="rapl",
        description="Intel/AMD CPU package energy: powercap RAPL energy_uj counters.",
    )
    register(
        "kdbench.device.sensors.jetson:JetsonSensor",
        name="jetson",
        description="Jetson board energy at the supply: INA3221 VDD_IN rail, integrated.",
    )


@hookimpl
def kdbench_register_confusers(register: Register) -> None:
    register(
        "kdbench.confusers:FrozenConfusers",
        name="frozen",
        description="Confusers frozen in a versioned JSON file (the Shapes world's ships).",
    )
    register(
        "kdbench.confusers:TaxonomyConfusers",
        name="taxonomy",
        description="Control: the target's nearest relatives in the dataset's taxonomy.",
    )
    register(
        "kdbench.confusers:RandomConfusers",
        name="random",
        description="Control: uniformly random other class names.",
    )


@hookimpl
def kdbench_register_protocols(register: Register) -> None:
    register(
        "kdbench.protocols.distill:Distill",
        name="distill",
        description="Task-specific distillation on a downstream task (student top-1).",
    )
    register(
        "kdbench.protocols.device:Device",
        name="device",
        description="Latency, throughput, FLOPs, memory and energy of teacher and student.",
    )
    register(
        "kdbench.protocols.fewshot:FewShot",
        name="fewshot",
        description="1-/5-shot NCM on novel classes from a student distilled on base classes.",
    )
    register(
        "kdbench.protocols.oneclass:OneClass",
        name="oneclass",
        description="Zero-shot one-class classification with confusers (AUROC per distance).",
    )
    register(
        "kdbench.protocols.segmentation:Segmentation",
        name="segmentation",
        description="Few-shot semantic segmentation: a head on k images per class (mIoU).",
    )


@hookimpl
def kdbench_register_executors(register: Register) -> None:
    register(
        "kdbench.executors.inline:InlineExecutor",
        name="inline",
        description="Every unit in this process, one after another (the default).",
    )
    register(
        "kdbench.executors.local:LocalExecutor",
        name="local",
        description="Subprocesses on this machine, --jobs at once.",
    )
    register(
        "kdbench.executors.slurm:SlurmExecutor",
        name="slurm",
        description="A Slurm job array through submitit, requeued on preemption (kdbench[slurm]).",
        url="https://github.com/facebookincubator/submitit",
    )
    register(
        "kdbench.executors.slurm:DebugExecutor",
        name="debug",
        description="The slurm executor's path run in this process (submitit's debug mode).",
    )


@hookimpl
def kdbench_register_transfer_sets(register: Register) -> None:
    for cls, name, text in (
        ("TaskTransfer", "task", "The task's own unlabelled images (its classes and domain)."),
        ("GenericTransfer", "generic", "Images drawn at random from a generic pool."),
        (
            "RetrievedTransfer",
            "retrieved",
            "Query-balanced nearest neighbours of the task's labelled images in a generic pool.",
        ),
        ("NoTransfer", "none", "No unlabelled images: label-free losses see the labels' images."),
    ):
        register(f"kdbench.transfer.sets:{cls}", name=name, description=text)
