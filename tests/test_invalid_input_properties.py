"""Property tests: for every create endpoint, a value that breaks one constraint of the
vendor's request schema (openapi-complete.yaml, docs/request-rules.md) is refused by our
models before any request, so the simulator counts zero creates; the same request with a
valid value is accepted by the models. Bounded runs, no deadline (a loaded machine)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_legnext import InvalidRequestError, endpoint
from prefect_legnext.testing import legnext_client_for
from test_request_rules import BASE, SQUARE

BOUNDED = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROMPTS = {"text", "prompt", "remix_prompt"}
URL_FIELDS = {"img_url"}


def outside(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1))


def bad_prompts() -> st.SearchStrategy[str]:
    # Hypothesis draws no text that long: a drawn text repeated past 8192 characters.
    long = st.builds(lambda t, n: (t * 8193)[: 8193 + n], st.text(min_size=1), st.integers(0, 99))
    return st.one_of(st.just(""), long)


def bad_urls() -> st.SearchStrategy[str]:
    host = st.from_regex(r"[a-z]{1,10}\.test", fullmatch=True)
    return st.one_of(
        host.map(lambda h: f"ftp://{h}/a.png"),
        host.map(lambda h: f"{h}/a.png"),
        st.just("https:///a.png"),
        host.map(lambda h: f"https://{h}/a b.png"),
        st.just("https://img.test/" + "a" * 1024),  # imgUrl's 1024 limit
    )


def bad_polygons() -> st.SearchStrategy[dict[str, Any]]:
    side = st.integers(500, 4096)
    return st.one_of(
        st.builds(lambda w: SQUARE | {"width": w}, outside(500, 4096)),
        st.builds(lambda h: SQUARE | {"height": h}, outside(500, 4096)),
        st.builds(  # an odd count, or fewer than 3 points
            lambda n: SQUARE | {"points": [1] * n},
            st.integers(0, 40).filter(lambda n: n % 2 or n < 6),
        ),
        st.builds(  # a point outside the image
            lambda w, x: {"width": w, "height": w, "points": [x, 0, 0, 10, 10, 10]},
            side,
            st.integers(4097, 10**6) | st.integers(max_value=-1),
        ),
    )


def bad_masks() -> st.SearchStrategy[dict[str, Any]]:
    url = "https://img.test/mask.png"
    return st.one_of(
        st.just({}),
        st.just({"areas": []}),
        st.just({"areas": [SQUARE], "url": url}),
        bad_polygons().map(lambda p: {"areas": [p]}),
        bad_urls().filter(lambda u: len(u) < 1000).map(lambda u: {"url": u}),
    )


# Per field: a strategy of values that break one of its constraints.
BAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "text": bad_prompts(),
    "prompt": bad_prompts(),
    "remix_prompt": bad_prompts(),
    "img_url": bad_urls(),
    "job_id": st.text(max_size=40).filter(
        lambda v: not re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", v)
    ),
    "image_no": outside(0, 3) | st.booleans(),
    "video_no": outside(0, 3) | st.booleans(),
    "type": st.integers().filter(lambda v: v not in (0, 1)) | st.booleans(),
    "mode": st.integers().filter(lambda v: v not in (0, 1)),
    "video_type": st.integers().filter(lambda v: v not in (0, 1)),
    "direction": outside(0, 3),
    "aspect_ratio": st.text(max_size=5).filter(lambda v: v not in ("2:3", "1:1", "3:2")),
    "img_urls": st.one_of(
        st.lists(st.just("https://img.test/a.png"), max_size=1),
        st.lists(st.just("https://img.test/a.png"), min_size=6, max_size=8),
        # No length limit here (only imgUrl has one).
        bad_urls().filter(lambda u: len(u) < 1000).map(lambda u: [u, "https://img.test/b.png"]),
    ),
    "mask": bad_masks(),
    "canvas": st.one_of(
        st.builds(lambda w: {"width": w, "height": 10}, st.integers(max_value=0)),
        st.just({"width": 10}),
    ),
    "img_pos": st.one_of(
        st.builds(lambda h: {"width": 1, "height": h, "x": 0, "y": 0}, st.integers(max_value=0)),
        st.just({"width": 1, "height": 1, "x": 0}),
    ),
    "callback": bad_urls().filter(lambda u: "a b" in u or "://" not in u or "ftp" in u),
}
SCALES = {"pan": (1.1, 3.0), "outpaint": (1.1, 2.0)}
CASES = sorted(
    (name, field) for name, base in BASE.items() for field in base if field in BAD_VALUES
)
CASES += [(name, "callback") for name in BASE]
CASES += [(name, "scale") for name in SCALES]


def bad_value(name: str, field: str) -> st.SearchStrategy[Any]:
    if field == "scale":
        low, high = SCALES[name]
        return st.one_of(
            st.floats(max_value=low, exclude_max=True, allow_nan=False),
            st.floats(min_value=high, exclude_min=True, allow_nan=False),
            st.just(float("nan")),
        )
    return BAD_VALUES[field]


@pytest.mark.parametrize(("name", "field"), CASES, ids=[f"{n}.{f}" for n, f in CASES])
def test_one_broken_constraint_is_refused_before_any_request(
    legnext_simulator: Any, name: str, field: str
) -> None:
    target = endpoint(name)
    with legnext_client_for(legnext_simulator) as client:

        @BOUNDED
        @given(value=bad_value(name, field))
        def refused(value: Any) -> None:
            with pytest.raises(InvalidRequestError):
                client.create(target.build(**(BASE[name] | {field: value})))

        refused()
        target.build(**BASE[name])  # the request without the broken value is valid
    assert legnext_simulator.stats()["requests"] == {}  # not one request reached it


@BOUNDED
@given(
    image_no=st.integers(0, 3),
    prompt=st.text(min_size=1, max_size=50).filter(str.strip),
    side=st.integers(500, 4096),
    data=st.data(),
)
def test_valid_values_are_accepted_by_the_models(
    image_no: int, prompt: str, side: int, data: st.DataObject
) -> None:
    x, y = data.draw(st.integers(0, side)), data.draw(st.integers(0, side))
    area = {"width": side, "height": side, "points": [0, 0, x, y, side, side]}
    endpoint("inpaint").build(**(BASE["inpaint"] | {"image_no": image_no, "remix_prompt": prompt}))
    endpoint("inpaint").build(**(BASE["inpaint"] | {"mask": {"areas": [area]}}))
    scale = data.draw(st.floats(1.1, 3.0))
    endpoint("pan").build(**(BASE["pan"] | {"scale": scale, "image_no": image_no}))
    endpoint("diffusion").build(text=prompt)
