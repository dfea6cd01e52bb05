"""The convergence agent: from each merged result, more scans or stop.

Noise model. Repeats share part of their noise: what is random falls as 1/sqrt(N) in the mean of
N scans, what is reproducible (the structure of continuous scanning, drifts common to all scans)
does not. So the noise of the merge of N scans is

    eps_N^2 = a^2 / N + b^2,

with b the floor no number of repeats gets below. The agent fits this (linear least squares of
eps^2 against 1/N, a^2 and b^2 kept non-negative) to every scan's own noise (points at N = 1) and
to each merge it has seen, once it has `fit_min_points` points at two or more N; the floor's
standard error comes from the fit's covariance. The target eps_t is reached after

    N_t = ceil(a^2 / (eps_t^2 - b^2))  scans,

and is out of reach when eps_t < b by more than the floor's error allows ("stop: target below
the noise floor", with the best reachable noise) or when N_t exceeds `max_scans`. A target at or
below the fitted b but within its error (b^2 - eps_t^2 at most the Student t quantile below times
b^2's standard error: the test of b^2 against zero, made against eps_t^2) is not shown to be out
of reach: the agent decides as for a floor not supported (below) and says so; a stop would end a
measurement, at night, on a floor that may well lie below the target. Likewise N_t > `max_scans`
stops only when the noise predicted at `max_scans` (a^2 / max_scans + b^2, with its error from
the same covariance) is above eps_t^2 by that margin.

That test sits on a threshold, so the stop for the floor has hysteresis: once the agent said
"stop: target below the noise floor" for a group, it keeps saying stop (`_floor_stop_kept`) while
the fitted b (fit of `fit_min_points` or more, significant or not) is still at or above eps_t; it
asks for more only once the fit puts b below eps_t, a move of the test's whole margin. Any
`more_scans` right after a stop names the stop it changes ("changed from the stop after N merged
scans (...)").

Target reached. A merge's own noise is one estimate (estimates of one noise scatter by about
10 %), so "target reached" needs the measured eps_N at or below eps_t and, once a fit of
`fit_min_points` points exists (floor supported or not: at the current N it interpolates), the
fit's a^2/N + b^2 at or below eps_t^2 too; otherwise the agent measures on and says why.

How many at a time. With the floor used, a suggestion counts only up to the first N at which the
predicted noise less its standard error reaches eps_t (`NoiseFit.hopeful_scans`), and an uncertain
one (confidence below 0.5) no more than N (eps_N / eps_t)^2, what 1/sqrt(N) with no floor needs;
the next merges decide again (`metrics.scans_counted_now`).

The floor is used only when the data support it: the points lie at three or more different N
(at two, any a and b pass through the mean noise at each N: a floor and the 1/sqrt(N) law fit
them alike, and the fit's error, from the scatter of the N = 1 points alone, says nothing about
that), and b^2 exceeds its standard error times the one-sided Student t quantile of
`floor_confidence` with points - 2 degrees of freedom. Otherwise the fit is reported
(`noise_model.floor_used` false) and the reason says why its floor is not used.

Before the fit is possible, and while its floor is not supported, it assumes b = 0
(N_t = ceil((eps_N sqrt(N) / eps_t)^2)) and marks the prediction uncertain; a floor can only
raise N_t, so when even that N_t exceeds `max_scans` it says stop as well, from two accepted
scans on.

One scan is no proof. A merge of one accepted scan (`n_merged` 1: scans rejected by the merge
say nothing about the noise) whose N_t exceeds `max_scans` gets `more_scans` of one scan, not
stop: one scan cannot tell a bad scan (a beam dump, the sample moved, a glitch) from a sample
that is noisy in every scan, and stopping on it could end a measurement that never had a good
scan. The reason says so ("one scan only: its noise ... would need N_t scans to reach the target
...; measuring one more to tell a bad scan from a noisy sample ..."), `predicted_scans_total`
keeps N_t and `uncertain` is true. The next merge decides on two scans: a first scan more than
about twice as noisy as the second makes it noisier than its best scan (`change_parameters`
naming the bad one, below); two scans as noisy as each other still project beyond `max_scans`,
and the agent stops. With `max_scans` 1 the maximum is reached after the first scan and the
agent stops as before.

Only noise values measured over the same k window are fitted together: epsilon_k is a noise per
point of chi(k) over its window, and a scan ending at lower k (a partial scan) has a different
one. Points whose window (`noise_kmin`, `noise_kmax`) differs from the current merge's by more
than `NOISE_WINDOW_TOLERANCE` are left out (counted in the metrics as `noise_points_left_out`);
points without a recorded window are kept.

Nor are merges of a scan that a later version of its file replaced (read before its writer had
finished, or rewritten): the merge leaves that read out (`replaced`), and a merge point made with
it would keep the old read in the fit, deciding the floor on data the pipeline no longer counts.
Each merge point remembers its accepted scans; once a merge lists one of them as replaced, the
point leaves the fit (`noise_points_replaced` in the metrics) until a merge of as many scans
without it takes its place.

Nor are noise values of merges normalised otherwise: the noise over another R range (`noise`
settings), of another background or mode, or by another version of `xas.normalize` is on another
scale. Each merge carries the settings and the code of the spectra it averages (`settings`);
when they differ from those of the merges before it (a `--resume --set normalize...`, a plugin
upgraded between sessions: the merge then averages only the new spectra), the group's noise
history restarts: the earlier merges' points leave the fit (and the spectrum the stability test
compares with), and the decision on that merge says so once (`noise history restarted: ...` in
its reason, `noise_history_restarted` in its metrics). Merges that carry no settings (older
messages) are compared with nothing.

Bookkeeping. The agent remembers the repeats it asked for. Those not arrived yet (asked minus
arrived, per group) are in flight and are never asked for again; a suggestion asks for
N_t - N - in flight more (at most `max_batch`, never beyond `max_scans`), so the scans asked for
in total never exceed its latest estimate. Arrived and taken count measurements (`_scans_taken`):
not an earlier read of a file replaced by a new version, nor a copy of another scan's data.
Without the queue's status any new scan of the group counts as one asked for: nothing else
tells them apart. Once the queue's status is heard (`update_queue`: the `queue` port is wired),
rejected, failed and held suggestions no longer count as in flight, and the repeats of any other
suggestion count as in flight until the queue says it is done (completed, failed, rejected),
whatever scans of the group arrive meanwhile (measured by hand, by another plan); after
`completed`, those of its repeats not arrived yet still count. (A running suggestion's repeats
that arrived count twice until it completes: the agent asks for fewer, never more, meanwhile.)
A stop while repeats are in flight, or held for a person's approval, says they are not needed
and asks to cancel them: `arguments.cancel` (how many) and `cancel_suggestions` (the uids of the
suggestions whose repeats may still come or be approved: pending, held, queued, running). The
SDK's Suggestion has no cancel action, so the words and these arguments are all a queue client
gets (the bluesky bridge removes queued items and withdraws pending and held ones).

A merge noisier than its best scan. Under the model the merge of N scans is never noisier than
one scan (a^2 / N + b^2 <= a^2 + b^2), floor or not, so a merge whose noise exceeds the lowest
own noise of its accepted scans (over the same k window) by more than `MERGE_EXCESS_TOLERANCE`
(the scatter of noise estimates) is no evidence of a floor: a scan is bad (a glitch, a much
noisier scan) and merging it made the result worse than the best scan alone. Such a merge gets
`change_parameters` naming the scans to check by their files' names and the sample, with their
own noise, their ids in the merge in its metrics (`suspect_scans`), no plan, and its noise stays
out of the fit, so it neither stops the agent nor inflates the scans it asks for later.

The scans to check are those whose own noise (over the merge's k window) is above the merge's,
in whatever order they were measured or arrived (a bad scan may well be the first; which scans
came since a merge that was fine says nothing about which is bad). The noise of the mean of N
scans whose noise is their own is sqrt(sum of eps_i^2) / N, below the noisiest scan's; when it
is above the best scan's, the scans above it are those that raised it. So a merge noisier than
its best scan never names that scan and always names the noisiest: of two the noisier one; of
three or five, every noisy one, two together included (leaving out one scan at a time would keep
the other and name neither). Scans all as noisy as each other make a merge less noisy than
each: nothing is named, the agent decides as usual. A mediocre scan above a merge a bad scan
spoiled is named too: the reason gives each one's own noise, so the scientist sees which is
which. When no scan is noisier than the merge, no scan's own noise explains it (the scans may
not line up: an energy shift, a drift): all accepted scans are named, and the reason says so.

Scans to reprocess, not to measure. Scans left out of the merge for their normalisation settings
(`superseded`, not an earlier read of a file nor a copy: a `--resume --set normalize...`) are
measured already: merged once normalised with the newest settings (`pipeline reprocess`). A
`more_scans` counts them towards the scans it needs (`arguments.reprocess`, and the reason says
so with the command) and asks the queue only for those still missing, possibly none (`scans` 0,
no plan: a bridge queues nothing).

Counting rejections. Scans rejected as copies of another scan (`duplicate`) or left out for
their normalisation settings (`superseded`) say nothing about the beam or the sample:
`change_parameters` for too many rejections counts only the other rejections, as a fraction of
the scans that count (merged plus those rejected for the beam or the sample).

Scans that disagree with no majority. A merge whose scans disagree with none of them agreed with
by more of the others (`no_majority`: two scans that disagree) merges nothing; more repeats of
it are not what is needed but a look at those scans (a mislabelled sample, another material):
`change_parameters` naming them, no plan. Any other decision on a merge that left scans out
names them, with the first part of their first reason, at the end of its reason.

Without a noise estimate. When the merge's settings say the noise estimate is off (normalize's
`noise.enabled` or `autobk.enabled` false), the agent cannot judge convergence: it says so once
per group (`change_parameters`, no plan) and then decides nothing on that group's merges
(`decide` returns None). A merge without a noise estimate while it is on asks for one more scan.

Restarts. Every decision depends on the merges decided on before (the noise history, the scans
asked for, the previous spectrum). `restore(merged)` replays one earlier merge without emitting
anything: fed the merges an earlier run decided on, in their order, the agent is in the state an
uninterrupted run would be in, and decides the same. A decision's uid derives from its inputs
(the agent's scope and settings, the previous decision's uid on the group, the merge's content),
so a replayed decision gets the uid it was sent with, and the queue's statuses naming it still
apply. A merge replayed by `restore` and delivered again (it was in flight when the earlier run
stopped) gets no second decision: `decide` returns None for it.

Queue statuses matter too (a rejected suggestion's repeats are no longer in flight). A status
leaves no output, so the unit names its `queue` port in `restore_ports` and the worker replays
every status of the run after the merges. Fed to `update_queue` then, they restore what the
queue said: each status carries
its suggestion's repeats, so a replayed decision that asked for other repeats than the first
time (the statuses that came before it are not replayed before it) is corrected, and one that
asked for none is recorded.

A suggestion is a plain dict whose content matches what bluesky-adaptive agents propose and what
bluesky-queueserver queues: `item` is a queue-server plan item
(`{"name", "args", "kwargs", "item_type": "plan"}`), or None when there is nothing to run.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import t as student_t

from asapo_pipelines_xas.merge import (
    label_conflicts,
    noise_scale,
    normaliser,
    only_by_label_conflict,
    settings_difference,
)
from asapo_pipelines_xas.params import ConvergenceParams
from asapo_pipelines_xas.temperature import kelvin, setpoint

ACTIONS = ("more_scans", "stop", "change_parameters")
#: queue states in which a suggestion's repeats will not come (CONTRACTS.md, plan/status)
NOT_COMING = frozenset({"rejected", "failed", "held"})
#: queue states in which a suggestion's repeats are no longer waiting or being measured
DONE = frozenset({"completed", "rejected", "failed"})
#: and those in which they are no longer in flight as the queue tells it
ENDED = DONE | {"held"}
QUEUE_STATES = frozenset(
    {"pending", "approved", "held", "rejected", "submitted", "running", "completed", "failed"}
)
#: noise windows whose ends differ by less than this (Å⁻¹) count as the same window: the grid of
#: k is 0.05 Å⁻¹, and the default window ends 0.5 Å⁻¹ below each scan's last k
NOISE_WINDOW_TOLERANCE = 0.5
#: a merge noisier than its best scan by more than this fraction holds a bad scan (the noise
#: estimates of repeats scatter by a few per cent)
MERGE_EXCESS_TOLERANCE = 0.1

#: how a scan's id ends when its producer emitted it with a key (`<unit>|<port>|key:<key>`,
#: the SDK's `keyed_output`): xas.scan-files keys a scan by its file name
KEYED = "key:"
#: and a later version of a file (it changed after it was read) by `<name>@<size>-<mtime_ns>`
FILE_VERSION = re.compile(r"@\d+-\d+$")

Window = tuple[float, float] | None


@dataclass(frozen=True)
class NoiseFit:
    """eps_N^2 = a2 / N + b2, fitted; `cov` is the covariance of (a2, b2)."""

    a2: float
    b2: float
    cov: tuple[tuple[float, float], tuple[float, float]]
    points: int
    #: how many different N the points are at
    n_values: int

    @property
    def floor(self) -> float:
        return math.sqrt(max(self.b2, 0.0))

    @property
    def floor_err(self) -> float:
        var = max(self.cov[1][1], 0.0)
        b = self.floor
        # d(b) = d(b2) / (2 b); at b = 0 the scale of the floor is sqrt(sigma_b2)
        return math.sqrt(var) / (2 * b) if b > 0 else math.sqrt(math.sqrt(var))

    def noise(self, n: float) -> float:
        return math.sqrt(max(self.a2 / n + self.b2, 0.0))

    def noise_err(self, n: float) -> float:
        x = 1.0 / n
        var = x * x * self.cov[0][0] + self.cov[1][1] + 2 * x * self.cov[0][1]
        eps = self.noise(n)
        return math.sqrt(max(var, 0.0)) / (2 * eps) if eps > 0 else math.inf

    def floor_doubt(self, confidence: float) -> str | None:
        """Why the data do not support the floor, or None when they do (see Noise model)."""
        if self.n_values < 3:
            return (
                f"{self.points} points at {self.n_values} numbers of scans cannot tell a floor "
                f"from 1/sqrt(N) (a and b pass through the mean noise at each N whatever the "
                f"law; it takes 3 different numbers of scans)"
            )
        sigma = math.sqrt(max(self.cov[1][1], 0.0))
        dof = self.points - 2
        needed = float(student_t.ppf(confidence, dof))
        if self.b2 <= needed * sigma:
            above = f"{self.b2 / sigma:.2g} standard errors" if sigma > 0 else "not"
            return (
                f"it is not significant (b² is {above} above zero, less than the {needed:.3g} "
                f"a one-sided {confidence:.0%} Student t with {dof} degrees of freedom asks for)"
            )
        return None

    def above_doubt(self, target: float, confidence: float, n: int | None = None) -> str | None:
        """Why the noise the fit predicts after `n` scans (None: the floor, after any number)
        is not shown to be above `target`, or None when it is: eps_n² must exceed target² by the
        one-sided Student t quantile of `confidence` (points - 2 degrees of freedom) times its
        standard error, the test `floor_doubt` makes of b² against zero. A target within that
        error is not out of reach: the floor may well be lower."""
        x = 0.0 if n is None else 1.0 / n
        var = x * x * self.cov[0][0] + self.cov[1][1] + 2 * x * self.cov[0][1]
        sigma = math.sqrt(max(var, 0.0))
        dof = self.points - 2
        needed = float(student_t.ppf(confidence, dof))
        margin = x * self.a2 + self.b2 - target * target
        if margin > needed * sigma:
            return None
        what = "b²" if n is None else f"a²/{n} + b²"
        above = f"only {margin / sigma:.2g} standard errors" if sigma > 0 else "not"
        return (
            f"{what} exceeds target² by {above}, less than the {needed:.3g} a one-sided "
            f"{confidence:.0%} Student t with {dof} degrees of freedom asks for"
        )

    def hopeful_scans(self, target: float, first: int, last: int) -> int:
        """The fewest scans, from `first` to `last`, after which the predicted noise less its
        standard error is at or below `target`: fewer would miss it even if the prediction
        erred low by that much (`last` when none does)."""
        for n in range(first, last):
            if self.noise(n) - self.noise_err(n) <= target:
                return n
        return last

    def scans_for(self, target: float) -> int | None:
        """Scans in total to reach `target`, or None when it is at or below the floor."""
        gap = target * target - self.b2
        if gap <= 0:
            return None
        return max(1, math.ceil(self.a2 / gap - 1e-9))


def fit_noise(points: list[tuple[int, float]]) -> NoiseFit | None:
    """Least squares of eps^2 = a2 / N + b2 over (N, eps) points; None when fewer than three
    points or only one N."""
    pts = [(n, e) for n, e in points if n >= 1 and e is not None and math.isfinite(e) and e > 0]
    if len(pts) < 3 or len({n for n, _ in pts}) < 2:
        return None
    x = np.array([1.0 / n for n, _ in pts])
    y = np.array([e * e for _, e in pts])
    design = np.column_stack([x, np.ones_like(x)])
    (a2, b2), *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = len(pts) - 2
    if b2 < 0 or a2 < 0:
        # on the boundary: one of the two is zero; refit the other alone
        if b2 < 0:
            a2, b2 = float(x @ y / (x @ x)), 0.0
        else:
            a2, b2 = 0.0, float(y.mean())
    residual = y - (a2 * x + b2)
    variance = float(residual @ residual) / dof
    cov = np.linalg.inv(design.T @ design) * variance
    return NoiseFit(
        float(a2),
        float(b2),
        ((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
        len(pts),
        len({n for n, _ in pts}),
    )


@dataclass
class _Request:
    scans: int
    state: str = "suggested"


@dataclass
class _Group:
    """What the agent remembers per measurement (sample, element, edge, mode)."""

    #: merged noise, its k window and its accepted scans by the number of scans merged (the
    #: latest merge of each N)
    history: dict[int, tuple[float, Window, frozenset[str]]] = field(default_factory=dict)
    #: scans (by scan id) that a later version of their file replaced (`_forget_replaced`)
    replaced: set[str] = field(default_factory=set)
    #: scans seen (accepted or not) when the first request was made
    asked_base: int | None = None
    #: the most scans (accepted or not) of any merge decided on; a merge of fewer came late
    seen_total: int = 0
    requests: dict[str, _Request] = field(default_factory=dict)
    previous: tuple[np.ndarray, np.ndarray] | None = None
    #: said already that convergence cannot be judged (the noise estimate is off)
    noise_off_said: bool = False
    #: uid of the latest decision on this group: the next one's uid derives from it
    last_uid: str = ""
    #: the normalisation settings and code of the merges in `history` (None: not recorded)
    settings: dict[str, Any] | None = None
    #: merges of the group seen since `settings` were set (decided on, or late): what a noise
    #: history restart leaves on another scale
    merges_on_scale: int = 0
    #: the scans merged when the agent said "stop: target below the noise floor" (hysteresis:
    #: it keeps that stop until the fitted floor falls below the target)
    floor_stop: int | None = None
    #: the latest decision when it was a stop: the scans merged and what it said first; a
    #: `more_scans` after it names it (the agent changed its mind)
    last_stop: tuple[int, str] | None = None

    def comparable(self, merged: Mapping[str, Any]) -> bool:
        """The merge's noise is on the scale of the history's (or either is not recorded)."""
        settings = _noise_settings(merged)
        return settings is None or self.settings is None or settings == self.settings

    def in_flight(self, n_total: int, *, queue_heard: bool = False) -> int:
        """The repeats asked for that are still to come. Without the queue's word, any new scan
        of the group counts as one of them (nothing else tells them apart); once the queue is
        heard from, a suggestion's repeats also stay in flight until it is done there: a scan
        measured otherwise (by hand, another plan) is not one of them."""
        if self.asked_base is None:
            return 0
        coming = sum(r.scans for r in self.requests.values() if r.state not in NOT_COMING)
        arrived = max(0, self.asked_base + coming - n_total)
        if not queue_heard:
            return arrived
        queued = sum(r.scans for r in self.requests.values() if r.state not in ENDED)
        return max(arrived, queued)

    def outstanding(self) -> list[str]:
        """The uids of the suggestions whose repeats may still be queued, measured or approved
        by a person (pending, held): neither ended in the queue (rejected, failed) nor
        completed."""
        return [uid for uid, r in self.requests.items() if r.scans > 0 and r.state not in DONE]

    def held(self) -> int:
        """The repeats of suggestions held for a person: not in flight, yet approvable."""
        return sum(r.scans for r in self.requests.values() if r.state == "held")


def _window(values: Mapping[str, Any]) -> Window:
    """The k window (Å⁻¹) a noise value was estimated over, when recorded."""
    kmin, kmax = values.get("noise_kmin"), values.get("noise_kmax")
    return None if kmin is None or kmax is None else (float(kmin), float(kmax))


def _same_window(a: Window, b: Window) -> bool:
    if a is None or b is None:
        return True  # not recorded (older messages): nothing to compare
    return abs(a[0] - b[0]) <= NOISE_WINDOW_TOLERANCE and abs(a[1] - b[1]) <= NOISE_WINDOW_TOLERANCE


def _noise_settings(merged: Mapping[str, Any]) -> dict[str, Any] | None:
    """What decides the scale of a merge's noise: the settings and code of the spectra it
    averages, as the merge records them; None when it records none (no scan merged, or an
    older message)."""
    settings = merged.get("settings")
    if not isinstance(settings, Mapping) or not settings:
        return None
    return noise_scale(settings)


def _restart_reason(old: Mapping[str, Any], new: Mapping[str, Any], earlier: int) -> str:
    """Why the noise history restarted, in words; `earlier`: the group's merges seen on the old
    scale (every one the user saw, of one scan or more)."""
    if old.get("normalizer") != new.get("normalizer"):
        change = f"normaliser changed (now {normaliser(new)}, before {normaliser(old)})"
    else:
        change = f"settings changed ({settings_difference(new, old)})"
    if earlier == 0:
        return f"noise history restarted: {change}"
    merges = (
        "the earlier merge of this group and of its scans"
        if earlier == 1
        else f"the {earlier} earlier merges of this group and of their scans"
    )
    return (
        f"noise history restarted: {change}, so the noise of {merges} is on another scale and "
        "is left out of the fit"
    )


def _noise_scale_note(merged: Mapping[str, Any]) -> str | None:
    """The scale of the noise decided on, when the merge measures it with settings of its own
    (`noise_by_merge`): the target is then met or missed on that scale, not on that of the
    noise xas.normalize gives each file."""
    differs = merged.get("noise_by_merge")
    if not differs:
        return None
    return (
        "noise of the merge and of each scan measured with xas.merge's own settings, not "
        f"the scans' ({differs})"
    )


def _counts_against_beam(rejected: Mapping[str, Any]) -> bool:
    """A rejection that says something about the beam or the sample: not a copy of another
    scan and not left out for its normalisation settings."""
    return not (rejected.get("superseded") or rejected.get("duplicate"))


#: the fewest scans a trend of E0 is told from
DRIFT_MIN_SCANS = 4
#: how sure the agent must be that a trend is not scatter (one-sided Student t)
DRIFT_CONFIDENCE = 0.99


def e0_drift(merged: Mapping[str, Any], limit: float) -> tuple[float, float, int, str] | None:
    """(eV per scan, eV in all, scans, the edge position followed) of a steady trend of the
    sample's edge over the group's scans in the order they were measured, when it exceeds
    `limit` in all and its slope is too regular for scatter (`DRIFT_CONFIDENCE`); else None.
    The merge's positions are on its aligned energy scale, and the scans it rejected for their
    edge position alone count: a drifting sample's last scans are rejected as outliers of its
    first, and the merge of the first ones then looks fine while it averages different states
    of the sample.

    The edge position is the one the merge screens by (`_edge_positions`): the half-step
    energy, E0 only where a scan has none. E0, the maximum of dmu/dE, jumps between features of
    the edge with noise: on the P65 goethite in fluorescence it is 7122.63 and 7125.63 eV on two
    repeats, so a sample moving by -0.5 eV a scan had E0s with no trend (slope -0.18 eV, scatter
    1.7 eV) while the merge rejected its first and last scans for half-step energies 1 eV
    from the group's, and the agent said nothing of a drift."""
    if limit <= 0:
        return None
    positions, what = _edge_positions(merged)
    n = len(positions)
    if n < DRIFT_MIN_SCANS:
        return None
    x = np.arange(n, dtype=float)
    slope, intercept = np.polyfit(x, positions, 1)
    residual = np.asarray(positions) - (slope * x + intercept)
    spread = float(np.sum((x - x.mean()) ** 2))
    error = math.sqrt(float(np.sum(residual**2)) / (n - 2) / spread)
    total = float(slope) * (n - 1)
    if abs(total) <= limit:
        return None
    if error > 0 and abs(slope) / error < student_t.ppf(DRIFT_CONFIDENCE, n - 2):
        return None
    return float(slope), total, n, what


def _edge_positions(merged: Mapping[str, Any]) -> tuple[list[float], str]:
    """The edge positions of the merge's scans that tell of the sample (those merged and
    those rejected for their edge position alone), in the order measured, and their name: the
    half-step energies when each such scan has one (what the merge screens by), else E0s (a
    merge made before it listed them)."""
    why = {r.get("scan"): list(r.get("reasons") or []) for r in merged.get("rejected", [])}
    counted = []
    for scan in merged.get("scans", []):
        reasons = why.get(scan.get("scan"), [])
        if scan.get("accepted") or (reasons and all(str(r).startswith("E0 ") for r in reasons)):
            counted.append(scan)

    def finite(scan: Mapping[str, Any], key: str) -> float | None:
        value = scan.get(key)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    halves = [finite(scan, "half_step") for scan in counted]
    if counted and all(h is not None for h in halves):
        return [h for h in halves if h is not None], "half-step energy"
    e0s = [finite(scan, "e0") for scan in counted]
    return [e for e in e0s if e is not None], "E0"


def _accepted_ids(merged: Mapping[str, Any]) -> frozenset[str]:
    """The scans (by scan id) a merge averages."""
    return frozenset(str(s.get("scan")) for s in merged.get("scans", []) if s.get("accepted"))


def _forget_replaced(state: _Group, merged: Mapping[str, Any]) -> list[int]:
    """Learn the scans this merge lists as replaced by a later version of their file, and drop
    the merge points made with any of them (see the module's docstring): their numbers of
    scans."""
    state.replaced |= {str(r.get("scan")) for r in merged.get("rejected", []) if r.get("replaced")}
    stale = [n for n, (_, _, scans) in state.history.items() if scans & state.replaced]
    for n in stale:
        del state.history[n]
    return stale


def _noise_disabled(merged: Mapping[str, Any]) -> bool:
    """The merge's settings say the noise estimate is off (not merely missing yet)."""
    settings = merged.get("settings") or {}
    return any(
        isinstance(settings.get(step), Mapping) and settings[step].get("enabled") is False
        for step in ("noise", "autobk")
    )


def _body(merged: Any) -> Mapping[str, Any]:
    """An `xas/merged` message body, also from a `Merged`."""
    return merged.to_json() if hasattr(merged, "to_json") else merged


def _digest(merged: Mapping[str, Any]) -> str:
    """What tells one merge's content from another's (arrays by their values)."""

    def plain(value: Any) -> Any:
        return value.tolist() if isinstance(value, np.ndarray | np.generic) else str(value)

    text = json.dumps(merged, sort_keys=True, default=plain)
    return hashlib.sha256(text.encode()).hexdigest()


def _scans(value: Any) -> int | None:
    """A status's repeat count, when it gives a usable one."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def scan_name(scan: str) -> str:
    """A merged scan as the scientist knows it: the name of its file, as xas.scan-files reads
    it, the NeXus writer titles its entry and `pipeline tail` shows in its metadata, not the
    provenance key the merge identifies it by. Of a later version of a file, the file's name
    too: the merge takes only the latest version of a file. An id its producer gave no key
    (an address) is all there is to name such a scan by."""
    # parsed as the SDK's `Message.key` does: unit labels and ports hold no "|", keys may
    parts = scan.split("|", 2)
    if len(parts) < 3 or not parts[2].startswith(KEYED):
        return scan
    return FILE_VERSION.sub("", parts[2][len(KEYED) :])


def _g(value: float) -> str:
    return f"{value:.3g}" if value == 0 or abs(value) >= 0.01 else f"{value:.2e}"


def _apart(value: float, other: float) -> str:
    """`value` with the digits that tell it from `other`: a reason never says that X is
    below X."""
    for digits in range(3, 8):
        text, versus = f"{value:.{digits}g}", f"{other:.{digits}g}"
        if text != versus:
            return text if abs(value) >= 0.01 or value == 0 else f"{value:.{digits - 1}e}"
    return f"{value:.8g}"


def _n(count: int, noun: str) -> str:
    """`1 merged scan`, `2 merged scans`: a reason is read by people, the first after one scan."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _plan_group(group: Mapping[str, str], merged: Mapping[str, Any]) -> dict[str, str]:
    """The group as the plan's keyword arguments: without what the files did not say (an
    empty value, `temperature unknown`) or said as no temperature (`-5 K`, `room
    temperature`, grouped by their text), which no plan can be asked to set. The temperature
    is the one its merged scans were measured at (`temperature.setpoint`), not the group's
    label, the multiple of the merge's step nearest them: a 20.5 K setpoint with a step of
    1 K is the group `21 K`, a temperature nobody measured at."""
    kwargs = {
        k: v for k, v in group.items() if v != "" and not (k == "temperature" and kelvin(v) is None)
    }
    readings = [
        float(s["temperature"])
        for s in merged.get("scans", [])
        if s.get("accepted") and isinstance(s.get("temperature"), int | float)
    ]
    if "temperature" in kwargs and readings:
        kwargs["temperature"] = setpoint(readings)
    return kwargs


def _scans_taken(n_merged: int, rejected: list[Mapping[str, Any]]) -> int:
    """The measurements a merge stands for: its merged scans and those rejected, but not the
    earlier reads of a file sent again as a new version (`replaced`: read too early, or
    rewritten) nor copies of another scan's data (`duplicate`). The repeats in flight and
    `max_scans` count these: a file read twice is one scan taken, not a repeat that arrived."""
    return n_merged + sum(1 for r in rejected if not r.get("replaced") and not r.get("duplicate"))


def _reprocessable(rejected: list[Mapping[str, Any]]) -> list[str]:
    """The scans (by scan id) left out of the merge only because they were normalised with
    other settings (or code) than the newest: measured, and merged once normalised again; not
    an earlier read of a file that came again (`replaced`) nor a copy (`duplicate`)."""
    return [
        str(r.get("scan"))
        for r in rejected
        if r.get("superseded") and not r.get("replaced") and not r.get("duplicate")
    ]


def _reprocess(scans: list[str], command: str | None) -> str:
    """That the scans left out for their settings count towards the target without beamtime,
    and how to merge them: the command to copy (`reprocess_command`), or, outside a pipeline
    run, its shape."""
    names = ", ".join(scan_name(s) for s in scans)
    one = len(scans) == 1
    how = (
        f"`{command}` (the newest settings)"
        if command
        else "`pipeline reprocess FILE --from RUN` with the newest settings (the same --set)"
    )
    return (
        f"{_n(len(scans), 'scan')} measured already ({names}) {'counts' if one else 'count'} "
        f"towards it: left out of the merge only for {'its' if one else 'their'} normalisation "
        f"settings, {'it needs' if one else 'they need'} no beamtime but {how} to be merged "
        f"(arguments.reprocess)"
    )


def reprocess_command(run: Mapping[str, Any]) -> str | None:
    """The command that normalises a run's scans again with the settings in force, e.g.
    `pipeline reprocess /data/p65-xas.pipeline.yaml --from r1 --set normalize.pre_edge.norm1=150`,
    from a unit's run context (`UnitContext.run`): the pipeline file of this session, the run,
    and its `--set` overrides, which a replay does not take over (it runs the file as it is).
    None outside a pipeline run."""
    file = run.get("session_pipeline_file") or run.get("pipeline_file")
    run_id = run.get("run")
    if not file or not run_id:
        return None
    words = ["pipeline", "reprocess", str(file), "--from", str(run_id)]
    overrides = run.get("overrides")
    for key, value in sorted((overrides if isinstance(overrides, Mapping) else {}).items()):
        # as `--set` reads it back (a YAML value): JSON is YAML's flow style
        text = value if isinstance(value, str) else json.dumps(value)
        words += ["--set", f"{key}={text}"]
    return shlex.join(words)


def _first_clause(text: str) -> str:
    """`text` up to its first `; ` outside parentheses: a reason's list of settings in
    parentheses (`(pre_edge.norm1 the default, not 150; pre_edge.norm2 ...)`) cut at its first
    `; ` read as one setting and an unclosed parenthesis."""
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and text.startswith("; ", i):
            return text[:i]
    return text


def _left_out(rejected: list[Mapping[str, Any]], shown: int = 5) -> str:
    """`left out of the merge: <file> (<reason>), ...`: the scans rejected, by their files'
    names, each with the first part of its first reason (the rest is in `bad_scans`)."""
    items = []
    for r in rejected[:shown]:
        reasons = list(r.get("reasons") or [])
        why = _first_clause(str(reasons[0])) if reasons else "no reason given"
        items.append(f"{scan_name(str(r.get('scan')))} ({why})")
    more = len(rejected) - shown
    tail = f" and {more} more (arguments.bad_scans)" if more > 0 else ""
    return f"left out of the merge: {', '.join(items)}{tail}"


def _accepted(merged: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The merge's records of the scans it averages."""
    return [s for s in merged.get("scans", []) if s.get("accepted")]


def _noisier_than_merge(merged: Mapping[str, Any], eps: float, window: Window) -> dict[str, float]:
    """The accepted scans whose own noise, over the merge's window, is above the merge's `eps`
    (id: own noise, in the merge's order): those that raised it (see the module's docstring).
    A scan's noise over another window is on another scale: it is not compared."""
    return {
        str(s["scan"]): float(s["epsilon_k"])
        for s in _accepted(merged)
        if s.get("epsilon_k") and _same_window(_window(s), window) and float(s["epsilon_k"]) > eps
    }


def _why_suspects(noisy: dict[str, float], suspects: list[str], sample: str | None) -> str:
    """The end of the reason of a merge noisier than its best scan: which scans to check and
    why (the names the scientist knows them by, with their own noise), or that no scan is
    noisier than the merge and all are to be checked."""
    check = _check_scans(suspects, sample)
    if not noisy:
        return (
            "none of its scans is noisier on its own than the merge, so no one scan's noise "
            f"explains it (do the scans line up? an energy shift, a drift): {check}"
        )
    own = ", ".join(_g(e) for e in noisy.values())
    if len(noisy) == 1:
        return (
            f"one scan is noisier on its own ({own}) than the merge and raised its noise; a scan "
            f"is likely bad: {check}"
        )
    return (
        f"{len(noisy)} scans are noisier on their own ({own}) than the merge and raised its "
        f"noise; they are likely bad: {check}"
    )


def _conflict_reason(merged: Mapping[str, Any], group: Mapping[str, str]) -> str:
    """Why a group made only of scans whose header contradicts their file name gets no plan."""
    conflicts = label_conflicts(merged)
    files = ", ".join(str(c.get("file")) for c in conflicts)
    header = sorted({str(c.get("header")) for c in conflicts})
    name = sorted({str(c.get("file_name")) for c in conflicts})
    one = len(conflicts) == 1
    return (
        f"this group exists only because of a header/file-name conflict: {files} "
        f"{'is' if one else 'are'} labelled {' / '.join(header)} by {'its' if one else 'their'} "
        f"header but {' / '.join(name)} by {'its' if one else 'their'} file name, and "
        f"{'is' if one else 'are'} grouped as the header says (sample {group.get('sample')}); "
        "nobody planned this group, so no scans of it are asked for: check whether the file "
        "was saved under another scan's name (rename it) or its header is wrong"
    )


def _still_queued(in_flight: int, held: int = 0) -> str:
    """What a stop says of the repeats asked for earlier that have not arrived, and of those
    held for a person's approval."""
    waiting = []
    if in_flight:
        verb = "is" if in_flight == 1 else "are"
        waiting.append(
            f"{_n(in_flight, 'scan')} asked for earlier {verb} still queued or being measured"
        )
    if held:
        verb = "is" if held == 1 else "are"
        waiting.append(f"{_n(held, 'scan')} asked for earlier {verb} held for approval")
    many = in_flight + held != 1
    return (
        f"{'; '.join(waiting)}; {'they are' if many else 'it is'} not needed: cancel "
        f"{'them' if many else 'it'}"
    )


def _headline(reason: str) -> str:
    """The first clause of a reason (`stop: target below the noise floor`, `noise ... reached
    the target ...`): what a later decision that changes it names."""
    return re.split(r"[.;]\s", reason, maxsplit=1)[0]


def _changed_from(stop: tuple[int, str]) -> str:
    n, headline = stop
    headline = headline.removeprefix("stop: ")
    return f"changed from the stop after {_n(n, 'merged scan')} ({headline})"


def _check_scans(scans: list[str], sample: str | None) -> str:
    """`check scans <file>, <file> of sample <sample>`: the scans by the names of their files."""
    names = ", ".join(scan_name(s) for s in scans)
    which = f"check scan {names}" if len(scans) == 1 else f"check scans {names}"
    return f"{which} of sample {sample}" if sample else which


class ConvergenceAgent:
    """Stateful per group: the noise history, the repeats asked for, the previous merge."""

    def __init__(
        self, params: ConvergenceParams, *, scope: str = "", reprocess: str | None = None
    ) -> None:
        """`scope` names what the uids must be unique in (a pipeline's run and unit instance):
        two agents of different scopes never make the same uid, even on the same merges.
        `reprocess` is the command that reprocesses the run with its newest settings
        (`reprocess_command`), which a reason names for scans left out for their settings."""
        self.params = params
        self.reprocess = reprocess
        self._groups: dict[tuple[tuple[str, str], ...], _Group] = {}
        #: uid -> the group and the number of scans seen of each `more_scans` decision
        self._decided: dict[str, tuple[_Group, int]] = {}
        #: digests of the merges `restore` replayed: decided by an earlier run
        self._restored: set[str] = set()
        #: whether the queue's status reached the agent (its `queue` port is wired): then a
        #: repeat asked for is in flight until the queue says its suggestion is done
        self._queue_heard = False
        # settings in the uids: another target on the same merges is another suggestion
        settings = f"{scope}|{params.model_dump_json()}"
        self._seed = hashlib.sha256(settings.encode()).hexdigest()

    # -- queue feedback ---------------------------------------------------------------------------
    def update_queue(self, status: Mapping[str, Any]) -> bool:
        """Apply one `plan/status` message; False when it is not about one of our suggestions."""
        uid = str(status.get("uid", ""))
        state = str(status.get("state", ""))
        decided = self._decided.get(uid)
        if decided is None or state not in QUEUE_STATES:
            return False
        group, n_total = decided
        self._queue_heard = True
        scans = _scans(status.get("scans"))
        if uid not in group.requests:
            # asked for none as decided here, for some as first made: replayed after the merges
            # on a restore, statuses miss the decisions made between; the queue says how many
            if not scans:
                return True
            self._record(group, uid, scans, n_total)
        request = group.requests[uid]
        request.state = state
        if scans is not None:
            request.scans = scans  # the operator may have changed the repeats
        return True

    def in_flight(self, group: Mapping[str, Any], n_total: int) -> int:
        key = tuple(sorted((str(k), str(v)) for k, v in group.items()))
        state = self._groups.get(key)
        return state.in_flight(n_total, queue_heard=self._queue_heard) if state else 0

    # -- decisions --------------------------------------------------------------------------------
    def take_late(self, merged: Mapping[str, Any]) -> bool:
        """True when a merge of more scans of the same group was decided on already.

        A transport promises no order (two merges sent in one batch may arrive swapped on
        ASAP::O), and a plan made from older data must not follow, and override, one made from
        newer data: such a merge gets no suggestion. Its noise still joins the fit when it is
        the only merge of its N seen.
        """
        merged, _, state = self._state_of(merged)
        n = int(merged.get("n_merged", 0))
        n_total = n + len(merged.get("rejected", []))
        if n_total >= state.seen_total or _digest(merged) in self._restored:
            return False  # not late; or decided before a restart, which `decide` tells
        values = dict(merged.get("values", {}))
        eps = values.get("epsilon_k")
        _forget_replaced(state, merged)
        if state.comparable(merged):
            state.merges_on_scale += 1
            scans = _accepted_ids(merged)
            if eps is not None and n > 0 and not scans & state.replaced:
                state.history.setdefault(n, (float(eps), _window(values), scans))
        return True

    def restore(self, merged: Mapping[str, Any]) -> None:
        """Replay one merge an earlier run decided on, emitting nothing (see Restarts)."""
        merged = _body(merged)
        digest = _digest(merged)
        if not self.take_late(merged):
            self._decide(merged, digest)
        self._restored.add(digest)

    def _state_of(
        self, merged: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any], dict[str, str], _Group]:
        merged = _body(merged)
        group = {str(k): str(v) for k, v in dict(merged.get("group", {})).items()}
        return merged, group, self._groups.setdefault(tuple(sorted(group.items())), _Group())

    def decide(self, merged: Mapping[str, Any]) -> dict[str, Any] | None:
        """A plan suggestion for one `xas/merged` message body (or `Merged.to_json()`); None
        when there is nothing to say: the noise estimate is off and that was said already, or
        the merge was decided before a restart (`restore`) and the transport delivers it again
        (it was in flight when the earlier run stopped; its decision went out then)."""
        merged = _body(merged)
        digest = _digest(merged)
        if digest in self._restored:
            return None
        return self._decide(merged, digest)

    def _decide(self, merged: Mapping[str, Any], digest: str) -> dict[str, Any] | None:
        merged, group, state = self._state_of(merged)
        p = self.params
        n = int(merged.get("n_merged", 0))
        rejected = list(merged.get("rejected", []))
        n_total = n + len(rejected)
        state.seen_total = max(state.seen_total, n_total)
        taken = _scans_taken(n, rejected)
        values = dict(merged.get("values", {}))
        eps = values.get("epsilon_k")
        bad = [{"scan": r.get("scan"), "reasons": list(r.get("reasons", []))} for r in rejected]
        in_flight = state.in_flight(taken, queue_heard=self._queue_heard)
        reprocessable = _reprocessable(rejected)
        metrics: dict[str, Any] = {
            "n_merged": n,
            "n_scans": taken,
            "epsilon_k": eps,
            "target_noise": p.target_noise,
            "e0": values.get("e0"),
            "edge_step": values.get("edge_step"),
            "in_flight": in_flight,
        }
        by_merge = _noise_scale_note(merged)
        if by_merge:
            metrics["noise_by_merge"] = merged["noise_by_merge"]
        restarted = self._restart_history(state, merged)
        if restarted:
            metrics["noise_history_restarted"] = restarted
        state.merges_on_scale += 1
        change = self._stability(state, merged)
        metrics["change_since_previous"] = change
        forgotten = _forget_replaced(state, merged)
        noisier = self._noisier_than_scans(merged, eps, _window(values)) if n >= 2 else None
        if eps is not None and n > 0 and noisier is None:
            # a merge noisier than its best scan would pass for a floor: it stays out of the fit
            state.history[n] = (float(eps), _window(values), _accepted_ids(merged))
        # those this merge does not take the place of
        forgotten = [k for k in forgotten if k >= 2 and k not in state.history]
        if forgotten:
            metrics["noise_points_replaced"] = len(forgotten)
        points, left_out = self._points(state, merged, _window(values))
        if left_out:
            metrics["noise_points_left_out"] = left_out
        fit, no_floor = self._floor_fit(points if eps is not None else [], metrics)
        uid = self._uid(state, digest)

        def suggestion(
            action: str,
            reason: str,
            confidence: float,
            scans: int = 0,
            check: list[str] | None = None,
        ) -> dict[str, Any]:
            item = None
            arguments: dict[str, Any] = {}
            if action == "more_scans":
                arguments = {"scans": scans, "in_flight": in_flight}
                if reprocessable:
                    # measured already: a queue client must not measure them again
                    arguments["reprocess"] = len(reprocessable)
                if scans > 0:
                    item = {
                        "name": p.plan_name,
                        "args": [],
                        "kwargs": {**_plan_group(group, merged), **p.plan_kwargs, "repeats": scans},
                        "item_type": "plan",
                    }
                    self._record(state, uid, scans, taken)
                self._decided[uid] = (state, taken)
            elif action == "change_parameters":
                arguments = {"check": check or sorted({r for b in bad for r in b["reasons"]})}
            held = state.held() if action == "stop" else 0
            if action == "stop" and (in_flight > 0 or held > 0):
                # repeats the agent asked for are still queued: at night nobody reads
                # `metrics.in_flight`, and the queue would measure them for nothing; held
                # ones a person could still approve in the inbox (the bridge withdraws them)
                arguments = {
                    "in_flight": in_flight,
                    "cancel": in_flight + held,
                    "cancel_suggestions": state.outstanding(),
                }
                reason = f"{reason}; {_still_queued(in_flight, held)}"
            if action == "more_scans" and state.last_stop is not None:
                # the agent changes its mind: the operator saw a stop, the reason says which
                reason = f"{_changed_from(state.last_stop)}: {reason}"
            if action != "stop":
                state.last_stop = None
            elif state.last_stop is None:
                # a run of stops is named by its first: the one the operator acted on
                state.last_stop = (n, _headline(reason))
            if rejected and action != "change_parameters":
                # change_parameters names them already (or the scans to check)
                reason = f"{reason}; {_left_out(rejected)}"
            if restarted:
                reason = f"{reason}; {restarted['reason']}"
            if by_merge:
                reason = f"{reason}; {by_merge}"
            state.last_uid = uid
            return {
                "uid": uid,
                "action": action,
                "target": group,
                "arguments": arguments,
                "reason": reason,
                "confidence": round(float(confidence), 3),
                "item": item,
                "bad_scans": bad,
                "latest": merged.get("latest"),
                # the scans the judged merge holds: what a record of the decision cites
                "accepted": [str(s) for s in merged.get("accepted", [])],
                "metrics": metrics,
            }

        if only_by_label_conflict(merged):
            # a Cu foil saved under an Fe series' name is grouped as its header says: a group
            # nobody planned, of which a queue must not be asked for repeats
            decision = suggestion("stop", _conflict_reason(merged, group), 0.9)
            decision["arguments"]["label_conflict"] = label_conflicts(merged)
            return decision
        disagreement = merged.get("no_majority")
        if isinstance(disagreement, Mapping):
            # a merge of nothing: more scans of it would be repeats of what, is the question
            scans = [str(x) for x in disagreement.get("scans", [])]
            return suggestion(
                "change_parameters",
                f"{disagreement.get('reason', 'the scans disagree with no majority')}; "
                f"{_check_scans(scans, group.get('sample'))} (the sample, its label, the "
                "beam): another repeat decides only if it agrees with one of them",
                0.8,
                check=["scans disagree with no majority"],
            )
        if n == 0 and rejected and not any(_counts_against_beam(r) for r in rejected):
            # its scans counted elsewhere (a new version of the file in another group) or are
            # copies: nothing of the beam or the sample to check, and nothing to measure here
            return suggestion("stop", "no scan of this group is left to merge", 0.9)
        if n == 0:
            return suggestion(
                "change_parameters",
                f"all {_n(n_total, 'scan')} rejected; check the beam and the sample",
                0.8,
            )
        # copies and scans left out for their normalisation settings say nothing about the beam
        # or the sample: they count neither as failures nor as scans measured
        faulty = [r for r in rejected if _counts_against_beam(r)]
        counted = n + len(faulty)
        if len(faulty) >= 2 and len(faulty) / counted > p.max_rejected_fraction:
            return suggestion(
                "change_parameters",
                f"{len(faulty)} of {counted} scans were rejected (more than "
                f"{p.max_rejected_fraction:.0%}); check the beam and the sample",
                0.7,
            )
        drift = e0_drift(merged, p.max_e0_drift)
        if drift is not None:
            slope, total, scans, what = drift
            return suggestion(
                "change_parameters",
                f"the sample's edge moves steadily by {slope:+.2f} eV per scan ({total:+.2f} eV "
                f"over {scans} scans, its {what}, beyond max_e0_drift {p.max_e0_drift:g} eV): "
                "the sample "
                "is likely changing under the beam (radiation damage, photoreduction) and the "
                "merge averages its states; measure a fresh spot or lower the dose (if the "
                "reference foil's E0 moved with it, check the monochromator's calibration)",
                0.7,
                check=["the sample's edge drifts from scan to scan"],
            )
        if eps is None and _noise_disabled(merged):
            if state.noise_off_said:
                return None
            state.noise_off_said = True
            return suggestion(
                "change_parameters",
                "cannot judge convergence without noise estimates: the noise estimate is off "
                "in normalize (noise.enabled or autobk.enabled is false); enable normalize's "
                "noise to let the agent decide",
                0.9,
                check=["normalize noise estimate is off"],
            )
        if eps is None:
            if taken >= p.max_scans:
                return suggestion("stop", f"maximum of {p.max_scans} scans reached", 0.6)
            if in_flight:
                return suggestion(
                    "more_scans",
                    f"no noise estimate (autobk or estimate_noise is off); waiting for the "
                    f"{in_flight} scans already asked for",
                    0.2,
                    0,
                )
            return suggestion(
                "more_scans", "no noise estimate yet (autobk or estimate_noise is off)", 0.2, 1
            )
        eps = float(eps)
        if noisier is not None:
            mean, best = noisier
            noisy = _noisier_than_merge(merged, eps, _window(values))
            suspects = list(noisy) or [str(s["scan"]) for s in _accepted(merged)]
            # the ids, for a program to find the scans in the merge (`scans`, `accepted`)
            metrics["suspect_scans"] = suspects
            return suggestion(
                "change_parameters",
                f"merge of {n} scans is noisier than its best scan (noise {_g(eps)}, best scan "
                f"{_g(best)}, mean of its scans {_g(mean)}), which no noise floor explains; "
                f"{_why_suspects(noisy, suspects, group.get('sample'))}",
                0.6,
                check=["merged noise above its scans' noise"],
            )
        floor_text = (
            f"; noise floor {_g(fit.floor)} ± {_g(fit.floor_err)} (fit of eps² = a²/N + b² to "
            f"{fit.points} points)"
            if fit
            else (f"; {no_floor}" if "noise_model" in metrics else "")
        )
        # the measured noise at or below the target is one estimate (it scatters by about 10 %):
        # the target is reached when the fit of all points agrees (see Target reached)
        unconfirmed = None
        if eps <= p.target_noise:
            check = self._reached_check(points, n, eps)
            if check is None:
                return suggestion(
                    "stop",
                    f"noise {_g(eps)} reached the target {_g(p.target_noise)} with "
                    f"{_n(n, 'merged scan')}{self._reached_by_fit(points, n)}{floor_text}",
                    0.95,
                )
            unconfirmed = check
        if taken >= p.max_scans:
            where = (
                "is at the target by its own estimate only"
                if unconfirmed
                else "is still above the target"
            )
            return suggestion(
                "stop",
                f"maximum of {p.max_scans} scans reached; noise {_g(eps)} {where} "
                f"{_g(p.target_noise)}{floor_text}",
                0.6,
            )
        if (
            p.stability_tolerance > 0
            and n >= p.stability_min_scans
            and change is not None
            and change < p.stability_tolerance
        ):
            return suggestion(
                "stop",
                f"the merged spectrum changed by {_g(change)} (RMS of the normalised mu) since "
                f"the previous merge, below {_g(p.stability_tolerance)}",
                0.75,
            )
        if state.floor_stop is not None:
            kept = self._floor_stop_kept(state, points, n, eps)
            if kept is not None:
                reason, confidence = kept
                return suggestion("stop", reason, confidence)
        unproven = self._floor_unproven(fit, n) if fit is not None else None
        if unproven is not None:
            # a stop on it could end a measurement whose floor is below (or further below)
            # the target after all: decided as with no floor, as for a floor not significant
            metrics["noise_model"]["floor_used"] = False
            no_floor, fit = unproven, None
        counted_now: int | None = None
        if fit is not None:
            best = fit.noise(max(p.max_scans, n))
            metrics["best_reachable_noise"] = best
            needed = fit.scans_for(p.target_noise)
            if needed is None:
                metrics["uncertain"] = False
                state.floor_stop = n
                return suggestion(
                    "stop",
                    f"stop: target below the noise floor. Noise {_g(eps)} after "
                    f"{_n(n, 'merged scan')}; "
                    f"the target {_apart(p.target_noise, fit.floor)} is significantly below "
                    f"the floor {_apart(fit.floor, p.target_noise)} ± {_g(fit.floor_err)} "
                    f"that repeats share (fit of eps² = a²/N + b² to {fit.points} points, "
                    f"a = {_g(math.sqrt(fit.a2))}); the best reachable noise is {_g(best)} "
                    f"with {max(p.max_scans, n)} scans",
                    self._fit_confidence(fit, n),
                )
            if needed > p.max_scans:
                metrics["predicted_scans_total"] = needed
                metrics["uncertain"] = False
                return suggestion(
                    "stop",
                    f"stop: target not reachable within max_scans. Noise {_g(eps)} after "
                    f"{_n(n, 'merged scan')}; the fit eps² = a²/N + b² to {fit.points} points (a = "
                    f"{_g(math.sqrt(fit.a2))}, floor {_g(fit.floor)} ± {_g(fit.floor_err)}) "
                    f"reaches the target {_apart(p.target_noise, best)} after {needed} scans, "
                    f"more than max_scans {p.max_scans}; the best reachable noise is "
                    f"{_apart(best, p.target_noise)}",
                    self._fit_confidence(fit, n),
                )
            # measured above the target: at least one more, whatever the fit says
            needed = max(needed, n + 1)
            how = (
                f"the fit eps² = a²/N + b² to {fit.points} points (a = {_g(math.sqrt(fit.a2))}, "
                f"floor {_g(fit.floor)} ± {_g(fit.floor_err)}) reaches it after {needed} merged "
                f"scans (predicted noise {_g(fit.noise(needed))} ± {_g(fit.noise_err(needed))})"
            )
            confidence = self._fit_confidence(fit, needed)
            uncertain = confidence < 0.5
            # near the floor N_t swings with every merge (4 scans after 3, 18 after 4): a
            # suggestion commits only the scans needed even if the prediction errs low by its
            # standard error, and a weak one only those needed with no floor at all
            hopeful = fit.hopeful_scans(p.target_noise, n + 1, needed)
            surely = max(n + 1, math.ceil(n * (eps / p.target_noise) ** 2 - 1e-9))
            if hopeful < needed and (not uncertain or hopeful <= surely):
                how += (
                    f"; the noise predicted less its error reaches the target after {hopeful} "
                    f"scans, so only those are counted now, and the agent decides again on "
                    "their merges"
                )
                counted_now = hopeful
            elif uncertain and surely < needed:
                how += (
                    f"; with confidence {confidence:.2f} that prediction is uncertain, so "
                    f"only the {surely} scans in total needed even with no floor (falling "
                    "as 1/sqrt(N)) are counted now, and the agent decides again on their "
                    "merges"
                )
                counted_now = surely
            if counted_now is not None:
                metrics["scans_counted_now"] = counted_now
        else:
            single = eps * math.sqrt(n)
            needed = max(n + 1, math.ceil((single / p.target_noise) ** 2 - 1e-9))
            if needed > p.max_scans and n == 1:
                # one scan cannot tell a bad scan (a beam dump, the sample moved) from a noisy
                # sample: measure one more before saying the target is out of reach
                metrics["predicted_scans_total"] = needed
                metrics["uncertain"] = True
                # a scan left out for its settings tells them apart as well, once reprocessed
                scans = max(
                    0, min(1 - in_flight - len(reprocessable), p.max_scans - taken - in_flight)
                )
                reason = (
                    f"one scan only: its noise {_g(eps)} would need {needed} scans to reach the "
                    f"target {_g(p.target_noise)} (falling as 1/sqrt(N), no floor: the most "
                    f"favourable case), more than max_scans {p.max_scans}; measuring one more "
                    "to tell a bad scan from a noisy sample before saying the target is out of "
                    "reach"
                )
                if in_flight:
                    verb = "has" if in_flight == 1 else "have"
                    reason += f"; {_n(in_flight, 'scan')} asked for earlier {verb} not arrived yet"
                if reprocessable:
                    reason += f"; {_reprocess(reprocessable, self.reprocess)}"
                reason += "; asking for 1 more" if scans > 0 else ", so no more are asked for now"
                return suggestion("more_scans", reason, 0.3, scans)
            if needed > p.max_scans:
                # b = 0 is the most favourable case: with a floor it would take even more
                metrics["predicted_scans_total"] = needed
                metrics["uncertain"] = True
                return suggestion(
                    "stop",
                    f"stop: target not reachable within max_scans. Noise {_g(eps)} after "
                    f"{_n(n, 'merged scan')}; {no_floor}; but even falling as 1/sqrt(N) (no "
                    f"floor, the most favourable case) it would reach the target "
                    f"{_g(p.target_noise)} only after {needed} scans, more than max_scans "
                    f"{p.max_scans}",
                    0.6,
                )
            how = (
                f"uncertain: {no_floor}; falling as 1/sqrt(N) (no floor) it reaches it after "
                f"{needed} merged scans"
            )
            confidence = 0.3
            uncertain = True
        metrics["predicted_scans_total"] = needed
        metrics["uncertain"] = uncertain
        needed_now = counted_now or needed
        # the scans still to ask for: what the estimate needs beyond those merged and in flight
        # and beyond those measured already that only need normalising with the newest
        # settings: reprocessing merges them, at no cost of beamtime
        more = needed_now - n - in_flight - len(reprocessable)
        if in_flight == 0 and not reprocessable:
            more = max(1, more)
        capped = max(0, min(more, p.max_batch, p.max_scans - taken - in_flight))
        reason = (
            f"{unconfirmed}; {how}"
            if unconfirmed
            else f"noise {_g(eps)} after {_n(n, 'merged scan')}, target {_g(p.target_noise)}; {how}"
        )
        if in_flight:
            verb = "has" if in_flight == 1 else "have"
            reason += f"; {_n(in_flight, 'scan')} asked for earlier {verb} not arrived yet"
        if reprocessable:
            reason += f"; {_reprocess(reprocessable, self.reprocess)}"
        if capped <= 0:
            reason += ", so no more are asked for now"
        elif capped < more:
            reason += (
                f"; asking for {capped} now (max_batch {p.max_batch}, max_scans {p.max_scans})"
            )
        else:
            reason += f"; asking for {capped} more"
        return suggestion("more_scans", reason, confidence, capped)

    # -- internals --------------------------------------------------------------------------------
    def _floor_fit(
        self, points: list[tuple[int, float]], metrics: dict[str, Any]
    ) -> tuple[NoiseFit | None, str]:
        """The fit whose floor the decision uses, or None and why it decides as with no floor;
        a fit of `fit_min_points` goes into the metrics (`noise_model`) either way."""
        p = self.params
        fit = fit_noise(points)
        if fit is None or fit.points < p.fit_min_points:
            return None, f"with fewer than {p.fit_min_points} points there is no floor fit yet"
        doubt = fit.floor_doubt(p.floor_confidence)
        metrics["noise_model"] = {
            "model": "eps^2 = a^2/N + b^2",
            "a": math.sqrt(fit.a2),
            "floor": fit.floor,
            "floor_err": fit.floor_err,
            "points": fit.points,
            "floor_used": doubt is None,
        }
        if doubt is None:
            return fit, ""
        # a floor the data do not support would stop the agent, or inflate what it asks for
        return None, (
            f"the fitted floor {_g(fit.floor)} ± {_g(fit.floor_err)} (fit of eps² = a²/N + b² "
            f"to {fit.points} points) is not used: {doubt}"
        )

    def _floor_unproven(self, fit: NoiseFit, n: int) -> str | None:
        """Why the fit's floor does not show the target out of reach although it puts it there
        (the target within the floor's error, or within the error of the noise predicted at
        `max_scans`), or None when it shows it or puts it within reach (see Noise model)."""
        p = self.params
        fitted = (
            f"the fitted floor {_g(fit.floor)} ± {_g(fit.floor_err)} (fit of eps² = a²/N + b² "
            f"to {fit.points} points) is not used"
        )
        needed = fit.scans_for(p.target_noise)
        if needed is None:
            doubt = fit.above_doubt(p.target_noise, p.floor_confidence)
            if doubt is None:
                return None
            return (
                f"{fitted}: the target {_g(p.target_noise)} is within its error, not "
                f"significantly below it ({doubt})"
            )
        last = max(p.max_scans, n)
        if needed <= p.max_scans:
            return None
        doubt = fit.above_doubt(p.target_noise, p.floor_confidence, last)
        if doubt is None:
            return None
        return (
            f"{fitted}: with it the target {_g(p.target_noise)} takes {needed} scans, more than "
            f"max_scans {p.max_scans}, but the noise it predicts after {last} scans, "
            f"{_g(fit.noise(last))} ± {_g(fit.noise_err(last))}, is not significantly above "
            f"the target ({doubt})"
        )

    def _reached_fit(self, points: list[tuple[int, float]]) -> NoiseFit | None:
        """The fit of all points that tells whether the target is reached (any fit of
        `fit_min_points`: at the current N it interpolates, floor supported or not)."""
        fit = fit_noise(points)
        return fit if fit is not None and fit.points >= self.params.fit_min_points else None

    def _reached_check(self, points: list[tuple[int, float]], n: int, eps: float) -> str | None:
        """Why a merge whose own noise is at or below the target does not reach it yet (the
        fit of all points predicts noise above the target at N = n), or None when it does."""
        fit = self._reached_fit(points)
        if fit is None or fit.noise(n) <= self.params.target_noise:
            return None
        return (
            f"noise {_g(eps)} after {_n(n, 'merged scan')} is at or below the target "
            f"{_g(self.params.target_noise)}, but the fit eps² = a²/N + b² to {fit.points} "
            f"points predicts {_apart(fit.noise(n), self.params.target_noise)} ± "
            f"{_g(fit.noise_err(n))} at {n} scans, above it: one noise estimate scatters by "
            "about 10 %, so the target is not taken as reached on it"
        )

    def _reached_by_fit(self, points: list[tuple[int, float]], n: int) -> str:
        """What the fit says of a target reached, for the stop's reason."""
        fit = self._reached_fit(points)
        if fit is None:
            return ""
        return (
            f" (the fit of eps² = a²/N + b² to {fit.points} points predicts "
            f"{_g(fit.noise(n))} ± {_g(fit.noise_err(n))} at {n} scans)"
        )

    def _floor_stop_kept(
        self, state: _Group, points: list[tuple[int, float]], n: int, eps: float
    ) -> tuple[str, float] | None:
        """The stop for the floor said before, kept while the fitted floor is still at or
        above the target (hysteresis, see Noise model), with its confidence; None when the
        floor fell below the target (the agent changes its mind, and says so)."""
        p = self.params
        fit = self._reached_fit(points)
        said = state.floor_stop
        if fit is None or said is None or fit.scans_for(p.target_noise) is not None:
            state.floor_stop = None
            return None
        doubt = fit.above_doubt(p.target_noise, p.floor_confidence)
        now = f", though no longer significantly ({doubt})" if doubt else ""
        last = max(p.max_scans, n)
        reason = (
            f"stop: target below the noise floor, as said after {_n(said, 'merged scan')}. "
            f"Noise {_g(eps)} after {_n(n, 'merged scan')}; the fitted floor "
            f"{_apart(fit.floor, p.target_noise)} ± {_g(fit.floor_err)} (fit of eps² = a²/N + "
            f"b² to {fit.points} points, a = {_g(math.sqrt(fit.a2))}) is still above the target "
            f"{_apart(p.target_noise, fit.floor)}{now}; once it said stop for the floor, the "
            "agent asks for more scans only when the fitted floor falls below the target; the "
            f"best reachable noise is {_g(fit.noise(last))} with {last} scans"
        )
        return reason, self._fit_confidence(fit, n)

    @staticmethod
    def _restart_history(state: _Group, merged: Mapping[str, Any]) -> dict[str, Any] | None:
        """Drop the group's noise history when this merge's spectra were normalised otherwise
        than those of the merges before it (see the module's docstring); what was dropped and
        why, when it was."""
        settings = _noise_settings(merged)
        if settings is None:
            return None
        old, state.settings = state.settings, settings
        if old is None or old == settings:
            return None
        # only merges of two or more scans are points of the fit (see _points); the reason
        # counts every merge seen on the old scale, as the user does
        dropped = sum(1 for n in state.history if n >= 2)
        earlier, state.merges_on_scale = state.merges_on_scale, 0
        state.history.clear()
        state.previous = None
        state.floor_stop = None  # decided on another scale
        return {
            "dropped": dropped,
            "earlier_merges": earlier,
            "reason": _restart_reason(old, settings, earlier),
        }

    def _uid(self, state: _Group, digest: str) -> str:
        """A decision's uid, from its inputs: the agent's scope and settings, the decisions on
        its group before it (through the latest one's uid) and this merge. The same merges in
        the same order make the same uids: `restore` gives each replayed decision the uid it
        was sent with, which the queue's statuses name."""
        text = f"{self._seed}|{state.last_uid}|{digest}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _record(self, state: _Group, uid: str, scans: int, n_total: int) -> None:
        # the scans seen when the earliest request was made (one recorded late, from the
        # queue's status after a restore, may be older than those recorded before it)
        if state.asked_base is None or n_total < state.asked_base:
            state.asked_base = n_total
        state.requests[uid] = _Request(scans)

    @staticmethod
    def _points(
        state: _Group, merged: Mapping[str, Any], window: Window
    ) -> tuple[list[tuple[int, float]], int]:
        """Each accepted scan's own noise at N = 1 and each merge of N >= 2 seen, over the
        current merge's noise window; and how many were left out for another window."""
        candidates = [
            (1, float(s["epsilon_k"]), _window(s))
            for s in merged.get("scans", [])
            if s.get("accepted") and s.get("epsilon_k")
        ]
        candidates += [(n, e, w) for n, (e, w, _) in sorted(state.history.items()) if n >= 2]
        points = [(n, e) for n, e, w in candidates if _same_window(w, window)]
        return points, len(candidates) - len(points)

    @staticmethod
    def _noisier_than_scans(
        merged: Mapping[str, Any], eps: Any, window: Window
    ) -> tuple[float, float] | None:
        """(mean, best) of the accepted scans' own noises when the merge is noisier than the
        best by more than MERGE_EXCESS_TOLERANCE (see the module's docstring), else None."""
        if eps is None:
            return None
        singles = [
            float(s["epsilon_k"])
            for s in merged.get("scans", [])
            if s.get("accepted") and s.get("epsilon_k") and _same_window(_window(s), window)
        ]
        if len(singles) < 2:
            return None
        mean = sum(singles) / len(singles)
        best = min(singles)
        if float(eps) <= best * (1 + MERGE_EXCESS_TOLERANCE):
            return None
        return mean, best

    @staticmethod
    def _fit_confidence(fit: NoiseFit, n: int) -> float:
        """High when the predicted noise at n is well determined (0.3 to 0.95)."""
        rel = fit.noise_err(n) / fit.noise(n) if fit.noise(n) > 0 else math.inf
        return min(0.95, max(0.3, 0.95 - 5 * rel))

    @staticmethod
    def _stability(state: _Group, merged: Mapping[str, Any]) -> float | None:
        arrays = dict(merged.get("arrays", {}))
        if "energy" not in arrays or "norm" not in arrays:
            return None
        energy = np.asarray(arrays["energy"], dtype=float)
        norm = np.asarray(arrays["norm"], dtype=float)
        previous = state.previous
        state.previous = (energy, norm)
        if previous is None:
            return None
        old = np.interp(energy, previous[0], previous[1])
        return float(np.sqrt(np.nanmean((norm - old) ** 2)))
