"""Number formatting, file names and links: the small rules every page relies on."""

import pytest

from kdbench.leaderboard.devices import fingerprint_id, fingerprint_summary, short_id
from kdbench.leaderboard.formatting import format_ci, format_number, sort_key_text
from kdbench.leaderboard.links import relative, safe_url, slug


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (61.5333, "61.53"),
        (123.456, "123.5"),
        (4321.9, "4322"),
        (0.01234, "0.0123"),
        (0.5, "0.500"),
        (0.0, "0.00"),
        (-0.0001, "-0.000100"),
        (None, "n/a"),
    ],
)
def test_format_number(value, text):
    assert format_number(value) == text


def test_ci_uses_the_means_decimals_and_sort_keys_are_exact():
    assert format_ci(61.5, 0.4) == "± 0.40"
    assert format_ci(61.5, None) == ""
    assert format_number(-0.001, 2) == "0.00"
    assert sort_key_text(0.1 + 0.2) == "0.30000000000000004"
    assert sort_key_text(None) == ""


@pytest.mark.parametrize(
    "name", ["kd", "dinov2_small.v1", "KD", "timm:vit", "../../etc/passwd", "<script>", "", "a b"]
)
def test_slugs_are_safe_file_names(name):
    s = slug(name)
    assert s and "/" not in s and ".." not in s and s == s.lower()
    assert all(c.isalnum() or c in "-_." for c in s)


def test_slugs_keep_safe_names_and_separate_the_others():
    assert slug("kd") == "kd"
    assert slug("KD") != slug("kd")
    assert slug("a b") != slug("a-b")


def test_a_name_shaped_like_a_hashed_slug_cannot_take_that_page():
    assert slug("MyKD") == "mykd-10cf0255"
    assert slug("mykd-10cf0255") != "mykd-10cf0255"
    assert slug("mykd-10cf0255abcdef01") != "mykd-10cf0255abcdef01"
    assert slug("model-v2") == "model-v2"  # ordinary names are kept


def test_unique_slugs_separate_names_whose_short_hashes_clash(monkeypatch):
    from kdbench.leaderboard import links

    real = links.slug

    def clashing(name, digits=8):  # pretend someone found a clashing 8-digit prefix
        return "mykd-10cf0255" if digits == 8 and name in {"MyKD", "MYKD!"} else real(name, digits)

    monkeypatch.setattr(links, "slug", clashing)
    slugs = links.unique_slugs(["MyKD", "MYKD!", "kd"])
    assert len(set(slugs.values())) == 3 and slugs["kd"] == "kd"
    assert slugs["MyKD"] == real("MyKD", 16) and slugs["MYKD!"] == real("MYKD!", 16)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.org/x?a=1", True),
        ("http://example.org", True),
        ("HTTPS://EXAMPLE.ORG", True),
        ("javascript:alert(1)", False),
        ("data:text/html,hi", False),
        ("//example.org", False),
        ("https://", False),
        ("https://exa mple.org", False),
        ("https://example.org/\nx", False),
        ("", False),
        (None, False),
    ],
)
def test_safe_url_allows_only_http(url, ok):
    assert safe_url(url) == (url if ok else None)


def test_relative_links():
    assert relative("index.html", "methods/kd.html") == "methods/kd.html"
    assert relative("protocols/embedded/fewshot.html", "static/x.css") == "../../static/x.css"
    assert relative("runs/a.html", "raw/embedded/a b#.json") == "../raw/embedded/a%20b%23.json"


def test_fingerprints():
    gpu = {"gpu": "H100", "driver": "550.54", "cpu": "Xeon"}
    assert fingerprint_id({"id": "lab-gpu-1", "gpu": "H100"}) == "lab-gpu-1"
    assert fingerprint_id(gpu) == fingerprint_id(dict(reversed(gpu.items())))
    assert len(fingerprint_id(gpu)) == 64 and len(short_id(fingerprint_id(gpu))) == 12
    assert fingerprint_summary(gpu) == "H100 · Xeon · driver 550.54"
    assert fingerprint_summary({"weird": 1}) == "weird=1"
    assert fingerprint_summary({"id": "cpu-1", "summary": "AMD EPYC, 1 thread(s)"}) == (
        "AMD EPYC, 1 thread(s)"
    )


def test_metric_rows_are_the_html_a_template_loop_writes_with_hostile_text_escaped():
    """Run pages write their metrics table in Python (one row per metric on every page);
    it is the HTML the template loop wrote, escaping included."""
    import jinja2

    from kdbench.leaderboard.templating import direction, metric_rows
    from kdbench.results import Metric

    loop = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string(
        """{% for m in metrics %}
<tr{% if m.headline %} class="headline"{% endif %}>
<td>{{ m.name }}{% if m.unit %} <span class="unit">({{ m.unit }})</span>{% endif %} {{ direction(m) }}{% if m.headline %} <span class="headline-mark" title="headline metric">★</span>{% endif %}</td>
<td class="num">{% if m.value is none %}<span title="{{ m.reason }}">n/a</span>{% else %}{{ num(m.value) }}{% endif %}</td>
<td class="num">{{ format_ci(m.value, m.ci95) }}</td>
<td class="num">{{ m.n if m.n is not none else '' }}</td>
<td>{% if m.per_seed %}{% for v in m.per_seed %}{{ num(v) }}{{ ', ' if not loop.last }}{% endfor %}{% endif %}</td>
<td>{{ m.reason or '' }}</td>
</tr>
{% endfor %}"""  # noqa: E501
    )
    hostile = "<script>alert('x')</script> & \"q\""
    metrics = [
        Metric(
            name="acc",
            value=61.25,
            ci95=0.5,
            n=3,
            higher_is_better=True,
            unit="%",
            headline=True,
            per_seed=[60.0, 61.5, 62.25],
        ),
        Metric(name="lat<b>", value=None, higher_is_better=False, unit=hostile, reason=hostile),
        Metric(name="x", value=-0.0001, ci95=None, n=None, higher_is_better=False, unit=None),
    ]
    expected = loop.render(
        metrics=metrics, direction=direction, num=format_number, format_ci=format_ci
    )
    assert str(metric_rows(metrics)) == expected
    assert "<script>" not in expected
