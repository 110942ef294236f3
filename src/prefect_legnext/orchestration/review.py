"""Review steps: after a reviewed step is persisted, a person picks which of its images
the next step works on (and may give the next step a new prompt, or stop the chain),
in a form of the Prefect UI that shows the images as thumbnails, or in the terminal.

How a run waits for the choice mirrors callback mode (`callback_mode`): the chain
raises `AwaitingReview`; the flow (`until_reviewed`) suspends the run from a
deployment (`suspend_flow_run`: the process exits, no worker is held) or pauses it in
its process otherwise (`pause_flow_run`), keyed on the step (`Review.key`). On resume
the chain runs again: every earlier step reuses its job and its stored outputs, and
the pause, already answered, hands back the choice.

Unanswered reviews take the run's default (`ReviewSettings.default`) at their timeout:
a paused run's own process resumes itself; a suspended run is resumed by the sweeper
(`sweep_reviews`, part of every `sweep_once`), which reads the review's due note
(``<key>-due``, a flow run input) the step left.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import copy_context
from datetime import UTC, datetime, timedelta
from html import escape
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast
from uuid import UUID

from prefect.context import FlowRunContext
from prefect.exceptions import NotPausedError
from prefect.input import RunInput
from pydantic import BaseModel, Field, create_model

from prefect_legnext.orchestration import slots
from prefect_legnext.orchestration.callback_mode import why_not_suspendable

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

T = TypeVar("T")
logger = logging.getLogger("prefect_legnext.orchestration.review")
ReviewDefault = Literal["carry", "stop"]
REVIEW_PREFIX = "legnext-review-"
# Our decision: a review's pause lasts this long beyond its timeout, so the default is
# applied (by the run's process, or by the sweeper on its schedule) before Prefect fails
# the run for a pause that ran out. A run nobody resumes still ends then: never forever.
PAUSE_GRACE_SECONDS = 3600
# How often a paused run's process asks the server whether it was resumed.
PAUSE_POLL_SECONDS = 2
TIMEOUT_REVIEWER = "nobody: the default at the timeout"
THUMBNAIL_PIXELS = 150  # two side by side in the resume form


class ReviewSettings(BaseModel):
    """Which steps of a run a person reviews, how long the run waits, and what it does
    when nobody answers: ``carry`` the planned image on, or ``stop`` the chain there."""

    actions: list[str] = []
    timeout_seconds: float = 3600.0
    default: ReviewDefault = "carry"

    def wants(self, action: str) -> bool:
        return action in self.actions


class Review(BaseModel):
    """What a review asks: the step's images and the numbers the next step may take."""

    key: str
    label: str
    index: int
    action: str
    job_id: str
    next_action: str
    thumbnails: list[str]
    allowed: list[int]
    default_image: int
    default_stop: bool
    takes_prompt: bool
    timeout_seconds: float

    def default_input(self) -> dict[str, Any]:
        """The answer given when nobody answers in time (valid against the form)."""
        return {"image_no": self.default_image, "stop": self.default_stop,
                "chosen_by": TIMEOUT_REVIEWER}  # fmt: skip


class ReviewChoice(BaseModel):
    """What was chosen, by whom and when (kept in the step's sidecar and the summary)."""

    image_no: int
    prompt: str | None = None
    stop: bool = False
    chosen_by: str
    chosen_at: datetime

    def describe(self) -> str:
        what = "stop" if self.stop else f"image {self.image_no}"
        prompt = f", new prompt {self.prompt!r}" if self.prompt else ""
        return f"{what}{prompt}, by {self.chosen_by} at {self.chosen_at:%Y-%m-%d %H:%M:%S} UTC"


class AwaitingReview(Exception):
    """A chain waits for a person's choice."""

    def __init__(self, review: Review) -> None:
        super().__init__(f"step {review.index} ({review.action}) of {review.label}")
        self.review = review


# Called in the process running the flow with each review (the CLI asks in the
# terminal): a choice, or None to leave the review to the Prefect UI.
REVIEWERS: list[Callable[[Review], ReviewChoice | None]] = []


class _Chosen:
    """Choices known to this process, by flow run and review key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._choices: dict[tuple[UUID | None, str], ReviewChoice] = {}

    def get(self, run: UUID | None, key: str) -> ReviewChoice | None:
        with self._lock:
            return self._choices.get((run, key))

    def add(self, run: UUID | None, key: str, choice: ReviewChoice) -> None:
        with self._lock:
            self._choices[(run, key)] = choice


CHOSEN = _Chosen()


def _flow_run_id() -> UUID | None:
    context = FlowRunContext.get()
    return context.flow_run.id if context is not None and context.flow_run is not None else None


def form_for(review: Review) -> type[RunInput]:
    """The form a person fills in: the image numbers the next step may take (a select box
    of exactly those: Prefect's server refuses any other number on resume), a new
    prompt when the next step takes one, "stop here" and who chooses."""
    numbers = cast(Any, Literal.__getitem__(tuple(review.allowed)))
    fields: dict[str, Any] = {
        # Prefect's UI (3.8) leaves a select empty whatever its default; an empty answer
        # takes the default, so the description says which that is.
        "image_no": (numbers, Field(
            default=review.default_image, title="Image to carry forward",
            description=f"Which image {review.next_action} works on: "
            + ", ".join(str(n) for n in review.allowed)
            + f" (left empty: {review.default_image})",
        )),
        "stop": (bool, Field(default=False, title="Stop here",
                             description="End the chain after this step.")),
        "chosen_by": (str, Field(default="", max_length=200, title="Your name",
                                 description="Kept with the choice.")),
    }  # fmt: skip
    if review.takes_prompt:
        fields["prompt"] = (
            str | None,
            Field(default=None, min_length=1, max_length=8192, title="New prompt",
                  description=f"Replaces the prompt of {review.next_action}; empty keeps it."),
        )  # fmt: skip
    form = create_model("ImageChoice", __base__=RunInput, **fields)
    return form.with_initial_data(description=description(review))


def description(review: Review) -> str:
    """Markdown above the form: the step's images as thumbnails labelled 0-3."""
    # Inline HTML: Prefect's markdown renderer draws it, and an <img> with a width is a
    # thumbnail (a markdown image is drawn at full size, and overflows the form).
    cells = [
        f'<b>{n}</b> <img src="{escape(url)}" alt="image {n}" width="{THUMBNAIL_PIXELS}">'
        for n, url in enumerate(review.thumbnails)
    ]
    refused = [n for n in range(len(review.thumbnails)) if n not in review.allowed]
    deadline = datetime.now(UTC) + timedelta(seconds=review.timeout_seconds)
    default = "stop the chain" if review.default_stop else f"carry image {review.default_image}"
    lines = [
        f"### {review.label}: step {review.index}, {review.action} (job `{review.job_id}`)",
        f"Pick the image **{review.next_action}** works on next.",
        "",
        # Two a line, each with its label (a label must not wrap away from its image).
        "<p>" + "<br>".join(" ".join(cells[i : i + 2]) for i in range(0, len(cells), 2)) + "</p>",
        "",
    ]
    if refused:
        lines.append(f"Legnext allows {review.next_action} only on images "
                     f"{', '.join(map(str, review.allowed))}.")  # fmt: skip
    lines.append(f"Unanswered by {deadline:%Y-%m-%d %H:%M} UTC, the run will {default}.")
    return "\n".join(lines)


def decide(review: Review) -> ReviewChoice:
    """The choice for `review`: known already (an earlier execution of the run, or a
    reviewer in this process), or given by a `REVIEWERS` callback; a direct call of the
    flow's function (no run to pause) takes the default. Otherwise the chain waits.

    Raises:
        AwaitingReview: nobody has chosen yet.
    """
    run = _flow_run_id()
    known = CHOSEN.get(run, review.key)
    if known is not None:
        return known
    for reviewer in list(REVIEWERS):
        choice = reviewer(review)
        if choice is not None:
            if choice.image_no not in review.allowed:
                raise ValueError(
                    f"image {choice.image_no} is not one of {review.allowed} for "
                    f"{review.next_action}; nothing was submitted for it"
                )
            CHOSEN.add(run, review.key, choice)
            return choice
    if run is None:
        logger.info("no flow run to pause for %s: taking the default", review.key)
        return _choice(review.default_input(), datetime.now(UTC))
    raise AwaitingReview(review)


def until_reviewed(run: Callable[[], T]) -> T:
    """Run the flow's chains; while one waits for a review, pause (or suspend) the run
    for it and run the chains again with the choice."""
    while True:
        try:
            return run()
        except AwaitingReview as waiting:
            review = waiting.review
            CHOSEN.add(_flow_run_id(), review.key, ask(review))


def ask(review: Review) -> ReviewChoice:
    """Wait for a person's answer to `review` on the Prefect server. From a deployment
    the run suspends (this process ends; the answer is read when the run executes
    again); otherwise it pauses here, and resumes itself with the default at the
    timeout."""
    from prefect.flow_runs import pause_flow_run, suspend_flow_run

    form = form_for(review)
    run_id = _flow_run_id()
    assert run_id is not None  # decide() took the default without a run
    # A person may take hours: the account slot parked for the next step goes back now.
    slots.release_parked()
    pause_seconds = int(review.timeout_seconds) + PAUSE_GRACE_SECONDS
    reason = why_not_suspendable()
    if reason is None:
        _save_due_note(run_id, review)
        logger.info("waiting for a review of %s: suspending the run", review.key)
        got = suspend_flow_run(wait_for_input=form, key=review.key, timeout=pause_seconds)
    else:
        logger.info("waiting for a review of %s in this process (%s)", review.key, reason)
        timer = threading.Timer(
            review.timeout_seconds, copy_context().run, (_resume_with_default, run_id, review)
        )
        timer.daemon = True
        timer.start()
        try:
            got = pause_flow_run(
                wait_for_input=form, key=review.key, timeout=pause_seconds,
                poll_interval=PAUSE_POLL_SECONDS,
            )  # fmt: skip
        finally:
            timer.cancel()
    assert got is not None
    return _choice(got.model_dump(), _answered_at(run_id, review.key))


def _choice(answer: dict[str, Any], when: datetime) -> ReviewChoice:
    return ReviewChoice(
        image_no=answer["image_no"], prompt=answer.get("prompt") or None,
        stop=bool(answer.get("stop")), chosen_by=answer.get("chosen_by") or "someone unnamed",
        chosen_at=when,
    )  # fmt: skip


def _answered_at(run_id: UUID, key: str) -> datetime:
    """When the answer reached the server (its run input's creation time)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for state in ("suspended", "paused"):
            found = client.filter_flow_run_input(run_id, f"{state}-{key}-response", 1, set())
            if found and found[0].created is not None:
                return found[0].created.astimezone(UTC)
    return datetime.now(UTC)


def _resume_with_default(run_id: UUID, review: Review) -> None:
    from prefect.flow_runs import resume_flow_run

    try:
        resume_flow_run(run_id, run_input=review.default_input())
        logger.info("nobody reviewed %s in time: took the default", review.key)
    except NotPausedError:  # a person was quicker
        pass


class DueNote(BaseModel):
    """A suspended review: when its default applies, and the answer that gives it."""

    key: str
    due_at: datetime
    default_input: dict[str, Any]


def review_key(step_key: str) -> str:
    """The pause key of the review of the step with idempotency key `step_key`: the same
    in every execution of the run (flow run input keys: lowercase, digits, dashes)."""
    return f"{REVIEW_PREFIX}{step_key.lower()}"


def _due_key(key: str) -> str:
    return f"{key}-due"


def _save_due_note(run_id: UUID, review: Review) -> None:
    from prefect.client.orchestration import get_client

    note = DueNote(
        key=review.key,
        due_at=datetime.now(UTC) + timedelta(seconds=review.timeout_seconds),
        default_input=review.default_input(),
    )
    with get_client(sync_client=True) as client:
        if client.filter_flow_run_input(run_id, _due_key(review.key), 1, set()):
            return  # the first execution's deadline stands
        client.create_flow_run_input(run_id, _due_key(review.key), note.model_dump_json())


def sweep_review(client: SyncPrefectClient, run_id: UUID, key: str, now: datetime) -> bool:
    """Resume a suspended review whose timeout passed with its default; True if so."""
    from prefect.flow_runs import resume_flow_run

    found = client.filter_flow_run_input(run_id, _due_key(key), 1, set())
    if not found:
        return False
    note = DueNote.model_validate_json(found[0].value)
    if now < note.due_at:
        return False
    try:
        resume_flow_run(run_id, run_input=note.default_input)
    except NotPausedError:  # a person was quicker
        return False
    return True
