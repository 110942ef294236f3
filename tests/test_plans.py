"""The planning rules as pure functions: no server, no simulator. Each refusal names its
exact error class and message, because a refused chain is what stands between a user's
mistake and a paid call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prefect_legnext.core.models import DiffusionRequest, InpaintRequest, Mask, RetextureRequest
from prefect_legnext.core.responses import Job
from prefect_legnext.orchestration.errors import BudgetExceededError, ChainError
from prefect_legnext.orchestration.flows import PointBudget, chain_label
from prefect_legnext.orchestration.plans import (
    PLACEHOLDER_JOB_ID,
    ChainStep,
    PlannedStep,
    build_request,
    check_parent,
    default_mask,
    parent_is_draft,
    plan_chain,
    with_draft_flags,
)

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "legnext" / "seeds"
PARENT_ID = "72e20f1a-6c76-4ec5-bda2-490016056fa8"


def vendor_task_objects() -> list[dict[str, Any]]:
    """Every JSON task object printed on the vendor's seed pages."""
    found = []
    decoder = json.JSONDecoder()
    for page in sorted(SEEDS.glob("*.txt")):
        text = page.read_text()
        at = text.find("{")
        while at != -1:
            try:
                value, end = decoder.raw_decode(text, at)
            except ValueError:
                at = text.find("{", at + 1)
                continue
            if isinstance(value, dict) and "job_id" in value:
                found.append(value)
            at = text.find("{", end)
    return found


def vendor_completed_grid() -> dict[str, Any]:
    """The vendor's own completed task object (inpaint page): the shape of a real parent.
    Skips, as the contract tests do, where the vendor's pages are not beside the repo."""
    if not SEEDS.is_dir():
        pytest.skip(f"vendor seed pages not found at {SEEDS}")
    completed = [t for t in vendor_task_objects() if t["status"] == "completed"]
    assert completed, f"no completed task object on the seed pages in {SEEDS}"
    return completed[0]


def parent_job(**output_changes: Any) -> Job:
    body = vendor_completed_grid()
    body["output"] = {**body["output"], **output_changes}
    return Job.model_validate(body)


def planned(step: ChainStep, index: int = 2) -> PlannedStep:
    return PlannedStep(index=index, step=step, output=step.endpoint.output, points=80)


# -- the vendor's sample, as the planner must read it ----------------------------------


def test_the_vendor_sample_has_no_enhance_key() -> None:
    # The premise of the enhance rules below: if the vendor ever shows the key, revisit.
    actions = vendor_completed_grid()["output"]["available_actions"]
    assert "enhance" not in actions
    assert set(actions) == {
        "edit", "inpaint", "outpaint", "pan", "remix", "reroll", "upscale", "variation",
    }  # fmt: skip


def test_enhance_on_a_draft_parent_passes_without_an_enhance_key() -> None:
    check_parent(planned(ChainStep(action="enhance", image_no=3)), parent_job(), parent_draft=True)


def test_enhance_on_a_parent_of_unknown_draftness_is_not_refused() -> None:
    # Unknown is not refused: Legnext itself answers 400 (free) if the parent is no draft.
    check_parent(planned(ChainStep(action="enhance")), parent_job(), parent_draft=None)


def test_enhance_on_a_parent_known_not_to_be_a_draft_is_refused() -> None:
    with pytest.raises(ChainError) as caught:
        check_parent(planned(ChainStep(action="enhance")), parent_job(), parent_draft=False)
    assert type(caught.value) is ChainError
    assert str(caught.value) == (
        f"step 2 (enhance): job {PARENT_ID} was not made in draft mode (--v 7 --draft), "
        "which enhance needs; nothing was submitted for it"
    )


@pytest.mark.parametrize(
    ("task_input", "expected"),
    [
        ({"prompt": "a fox --v 7 --draft"}, True),
        ({"text": "a fox --draft --version 7.1"}, True),
        ({"prompt": "a fox --v 6.1"}, False),
        ({"prompt": "a fox --draft"}, False),
        (None, None),  # the vendor's samples: input is null
        ({"other": 1}, None),
    ],
)
def test_draftness_from_the_task_object_when_nothing_else_is_known(
    task_input: Any, expected: bool | None
) -> None:
    body = vendor_completed_grid() | {"input": task_input}
    assert parent_is_draft(Job.model_validate(body), None) is expected


def test_what_we_know_of_our_own_request_wins_over_the_task_object() -> None:
    body = vendor_completed_grid() | {"input": {"prompt": "a fox --v 6"}}
    assert parent_is_draft(Job.model_validate(body), True) is True


def test_a_listed_action_that_excludes_the_image_is_refused() -> None:
    parent = parent_job(available_actions={"upscale": [0, 1], "reroll": True})
    with pytest.raises(ChainError) as caught:
        check_parent(planned(ChainStep(action="upscale", image_no=2, options={"type": 0})), parent)
    assert str(caught.value) == (
        f"step 2 (upscale): job {PARENT_ID} does not allow upscale on image 2 "
        "(available_actions: {'upscale': [0, 1], 'reroll': True}); nothing was submitted for it"
    )


def test_reroll_false_is_refused() -> None:
    parent = parent_job(available_actions={"reroll": False})
    with pytest.raises(ChainError, match=r"^step 2 \(reroll\): .* does not allow reroll \("):
        check_parent(planned(ChainStep(action="reroll")), parent)


@pytest.mark.parametrize("actions", [{}, None, {"reroll": True}])
def test_an_action_the_parent_does_not_mention_is_unknown_not_refused(actions: Any) -> None:
    parent = parent_job(available_actions=actions)
    check_parent(planned(ChainStep(action="inpaint", mask=default_mask())), parent)


def test_an_allowed_image_passes() -> None:
    check_parent(planned(ChainStep(action="variation", image_no=3, options={"type": 1})),
                 parent_job())  # fmt: skip


def test_steps_that_take_a_url_are_not_checked_against_the_parent() -> None:
    parent = parent_job(available_actions={"upscale": []})
    check_parent(planned(ChainStep(action="retexture", prompt="as wood")), parent)


# -- draft flags --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a fox", "a fox --v 7 --draft"),
        ("a fox  ", "a fox --v 7 --draft"),
        ("a fox --ar 3:2", "a fox --ar 3:2 --v 7 --draft"),
        ("a fox --v 7", "a fox --v 7 --draft"),
        ("a fox --draft", "a fox --draft --v 7"),
        ("a fox --version 7.1 --draft", "a fox --version 7.1 --draft"),
        ("a fox --v 7 --draft --ar 1:1", "a fox --v 7 --draft --ar 1:1"),
    ],
)
def test_draft_flags_are_appended_cleanly(prompt: str, expected: str) -> None:
    result = with_draft_flags(prompt)
    assert result == expected
    assert "  " not in result
    assert DiffusionRequest(text=result).is_enhanceable


@pytest.mark.parametrize("prompt", ["a fox --v 6.1", "a fox --version 5 --draft", "a --v 7 --v 6"])
def test_a_conflicting_version_before_an_enhance_is_an_error(prompt: str) -> None:
    with pytest.raises(ChainError) as caught:
        with_draft_flags(prompt)
    assert "enhance needs a draft parent made with --v 7 --draft" in str(caught.value)
    assert "remove the version flag or the enhance step" in str(caught.value)


def test_a_conflicting_version_refuses_the_whole_chain_naming_the_step() -> None:
    steps = [ChainStep(action="diffusion", prompt="a fox --v 6.1"), ChainStep(action="enhance")]
    with pytest.raises(ChainError) as caught:
        plan_chain(steps)
    assert str(caught.value) == (
        "step 1 (diffusion): the prompt asks for --v 6.1, but enhance needs a draft parent "
        "made with --v 7 --draft; remove the version flag or the enhance step"
    )


def test_a_version_is_left_alone_when_no_enhance_follows() -> None:
    plan = plan_chain([ChainStep(action="diffusion", prompt="a fox --v 6.1")])
    assert plan.steps[0].step.prompt == "a fox --v 6.1"
    assert plan.steps[0].points == 80 and not plan.steps[0].draft


def test_plan_marks_the_draft_parent_and_its_price() -> None:
    plan = plan_chain([ChainStep(action="diffusion", prompt="a fox"), ChainStep(action="enhance")])
    assert plan.steps[0].step.prompt == "a fox --v 7 --draft"
    assert plan.steps[0].draft and plan.steps[0].points == 40
    assert plan.points == 40 + 80


# -- plan_chain's static refusals -----------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "a chain needs at least one step"),
        (
            [ChainStep(action="inpaint", mask=default_mask())],
            "step 1 (inpaint) needs a previous step to work on",
        ),
        (
            [ChainStep(action="diffusion", prompt="a"), ChainStep(action="shorten", prompt="b")],
            "step 2 (shorten) cannot follow a step: it takes no parent or image",
        ),
        (
            [
                ChainStep(action="diffusion", prompt="a"),
                ChainStep(action="upscale", options={"type": 0}),
                ChainStep(action="enhance"),
            ],
            "step 3 (enhance): enhance needs a draft parent (diffusion with --v 7 --draft)",
        ),
        (
            [
                ChainStep(action="describe", options={"img_url": "https://x.test/a.png"}),
                ChainStep(action="upscale", options={"type": 0}),
            ],
            "step 2 (upscale): it cannot follow describe (which produces text)",
        ),
        (
            [
                ChainStep(action="diffusion", prompt="a"),
                ChainStep(action="upscale", options={"type": 0}),
                ChainStep(action="variation", image_no=2, options={"type": 1}),
            ],
            "step 3 (variation): image_no 2 is not available; upscale produces 1 output(s)",
        ),
        (
            [ChainStep(action="diffusion", prompt="a"), ChainStep(action="enhance", prompt="b")],
            "step 2 (enhance): it takes no prompt",
        ),
        (
            [
                ChainStep(action="diffusion", prompt="a"),
                ChainStep(action="retexture", prompt="b", mask=default_mask()),
            ],
            "step 2 (retexture): it takes no mask",
        ),
        (
            [
                ChainStep(action="diffusion", prompt="a"),
                ChainStep(action="upscale", options={"type": 0, "image_no": 1}),
            ],
            "step 2 (upscale): image_no come from the previous step; remove them from options",
        ),
    ],
)
def test_plan_chain_refusals(steps: list[ChainStep], message: str) -> None:
    with pytest.raises(ChainError) as caught:
        plan_chain(steps)
    assert type(caught.value) is ChainError
    assert str(caught.value) == message


def test_a_step_that_breaks_a_request_rule_names_step_field_and_rule() -> None:
    steps = [
        ChainStep(action="diffusion", prompt="a"),
        ChainStep(action="pan", options={"direction": 7, "scale": 1.5}),
    ]
    with pytest.raises(ChainError) as caught:
        plan_chain(steps)
    assert str(caught.value).startswith("step 2 (pan): invalid pan request: direction: ")


# -- build_request ----------------------------------------------------------------------


def test_build_request_carries_the_parent_and_the_image_number() -> None:
    request = build_request(
        ChainStep(action="inpaint", image_no=2, mask=default_mask(), prompt="a boat"),
        parent_job_id=PLACEHOLDER_JOB_ID,
        parent_image_url=None,
    )
    assert isinstance(request, InpaintRequest)
    assert request.to_wire()["jobId"] == PLACEHOLDER_JOB_ID
    assert request.to_wire()["imageNo"] == 2
    assert request.to_wire()["remixPrompt"] == "a boat"


def test_build_request_feeds_an_image_url_to_steps_that_take_one() -> None:
    request = build_request(
        ChainStep(action="retexture", prompt="as wood"),
        parent_job_id=PLACEHOLDER_JOB_ID,
        parent_image_url="https://bucket.test/1.png",
    )
    assert isinstance(request, RetextureRequest)
    assert request.to_wire() == {"imgUrl": "https://bucket.test/1.png", "remixPrompt": "as wood"}


def test_build_request_with_a_url_mask() -> None:
    mask = Mask(url="https://bucket.test/mask.png")
    request = build_request(
        ChainStep(action="inpaint", mask=mask), parent_job_id=PARENT_ID, parent_image_url=None
    )
    assert request.to_wire()["mask"] == {"url": "https://bucket.test/mask.png"}


# -- the budget during a run --------------------------------------------------------------


def test_the_budget_refuses_a_step_mid_run_when_max_points_would_be_passed() -> None:
    budget = PointBudget(max_points=200, available=10_000)
    budget.reserve(40, "step 1 (diffusion)")
    budget.reserve(80, "step 2 (enhance)")
    with pytest.raises(BudgetExceededError) as caught:
        budget.reserve(120, "step 3 (inpaint)")
    assert str(caught.value) == (
        "step 3 (inpaint) would cost 120 points, 120 already spent of max_points=200; not submitted"
    )
    assert budget.reserved == 120


def test_the_budget_refuses_a_step_mid_run_when_the_account_runs_dry() -> None:
    budget = PointBudget(max_points=None, available=150)
    budget.reserve(80, "step 1 (diffusion)")
    with pytest.raises(BudgetExceededError) as caught:
        budget.reserve(120, "step 2 (inpaint)")
    assert str(caught.value) == (
        "step 2 (inpaint) would cost 120 points; the account has 70 left; not submitted"
    )


def test_a_job_paid_by_an_earlier_attempt_counts_against_max_points_only() -> None:
    budget = PointBudget(max_points=300, available=100)
    budget.reserve(120, "step 1 (inpaint)", already_paid=True)
    budget.reserve(100, "step 2 (upscale)")
    with pytest.raises(BudgetExceededError, match="the account has 0 left"):
        budget.reserve(1, "step 3")


@pytest.mark.parametrize(
    ("points", "first_attempt", "message"),
    [
        (400, True, "the run costs 400 points, above max_points=300; nothing was submitted"),
        (250, True, "the run costs 250 points but the account has 200 available; "
                    "nothing was submitted"),
    ],
)  # fmt: skip
def test_check_plan_refusals(points: int, first_attempt: bool, message: str) -> None:
    with pytest.raises(BudgetExceededError) as caught:
        PointBudget(max_points=300, available=200).check_plan(points, first_attempt=first_attempt)
    assert str(caught.value) == message


def test_a_retry_may_plan_past_the_balance_it_already_spent() -> None:
    PointBudget(max_points=300, available=200).check_plan(250, first_attempt=False)


# -- labels -----------------------------------------------------------------------------


def test_chain_labels_are_the_prompt_shortened() -> None:
    assert chain_label("a  lighthouse\nat dawn", "diffusion") == "a lighthouse at dawn"
    assert chain_label(None, "upscale") == "upscale"
    long = chain_label("x" * 100, "diffusion")
    assert len(long) == 40 and long.endswith("…")
