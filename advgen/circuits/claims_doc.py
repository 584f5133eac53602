"""check-claim's claims.json (IOI) as typed records: one writer, one reader.

`claims.write_claims` builds claims.json through `ClaimsDoc`, so its shape is stated once, here, as the fields of
the records below (in the file's key order). `ClaimsDoc.from_dict` reads the current shape strictly: a field missing
or of the wrong type is an AdvgenError naming the file and the field. `read_claims` is the one reader of any
claims.json: it also reads older and partial documents (no scrubbing, no absolute block, a bare number for
`ratio_to_model`) and a task check-claim's (`task_claims`), whose parts the IOI records do not name are left out;
a field it does not find is None. `completeness`, the header's `settings` and `versions`, and the ladder's rows and
placements are carried verbatim (Mapping / list): no reader picks them apart. Nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advgen.core import docfields as f
from advgen.core import files
from advgen.core.docspec import PlainRecord, load_record, plain_record, spec
from advgen.core.types import AdvgenError, Interval


@dataclass(frozen=True)
class MetricRow(PlainRecord):
    """One ablation's row of `table` (and causal scrubbing's `metrics`): `claim_metrics.metric_row`."""

    mean_ld: Interval | None = spec("ci")
    ratio_to_model: Interval | None = spec("ci")
    """F(C) / F(M) with a paired bootstrap interval (older documents: a bare number, read as its mean)."""
    faithfulness_gap: Interval | None = spec("ci")
    mean_abs_ld_diff: Interval | None = spec("ci")
    kl_model_circuit: Interval | None = spec("ci")
    accuracy: Interval | None = spec("ci")
    loss_model: float | None = spec("num")
    loss_circuit: float | None = spec("num")
    loss_empty: float | None = spec("num")
    loss_recovered_nats: float | None = spec("num")
    loss_recovered_pct: float | None = spec("num")
    empty_mean_ld: float | None = spec("num")
    per_example_sd_pct: float | None = spec("num")
    per_example_quantiles_pct: Mapping[str, float] | None = spec("nummap")
    sign_flip_rate: float | None = spec("num")


@dataclass(frozen=True)
class Scrubbing:
    """The `causal_scrubbing` block (`claims.scrub_block`): the headline, the spread, and a `metrics` row.

    Every field None: not measured (written {}); only `skipped`: the prompts had no name twins."""

    EMPTY_OK = True
    ALONE = "skipped"
    skipped: str | None = spec("str", opt=True)
    ld_kept_pct: float | None = spec("num")
    ld_kept_pct_ci: Interval | None = spec("ci")
    sd: float | None = spec("num")
    quantiles: Mapping[str, float] | None = spec("nummap")
    sign_flip_rate: float | None = spec("num")
    mean_ld_model: float | None = spec("num")
    mean_ld_scrubbed: float | None = spec("num")
    mean_abs_ld_diff: float | None = spec("num")
    mean_loss_scrubbed: float | None = spec("num")
    mean_loss_model: float | None = spec("num")
    mean_p_io_model: float | None = spec("num")
    mean_p_io_scrubbed: float | None = spec("num")
    mean_p_donor_io_scrubbed: float | None = spec("num")
    donor_io_beats_io_rate: float | None = spec("num")
    baseline_ld_kept_pct: float | None = spec("num")
    baseline_sign_flip_rate: float | None = spec("num")
    n: int | None = spec("int")
    draws: int | None = spec("int")
    per_example: str | None = spec("str")
    resampling: str | None = spec("str")
    metrics: MetricRow | None = spec("rec", MetricRow)

    def to_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped} if self.skipped is not None else plain_record(self)


@dataclass(frozen=True)
class Absolute(PlainRecord):
    """The `absolute` block (`advgen.circuits.absolute`): loss recovered and the circuit's place on the ladder.

    `placements`, `ladder_basis` and `ladder` are there only when the ladder ran; `ladder_equivalent_params` and
    `times_smaller` are null (read NaN) when the circuit falls outside it."""

    EMPTY_OK = True
    loss_recovered_nats: float | None = spec("num")
    loss_recovered_pct: float | None = spec("num")
    ioi_loss: Mapping[str, float] | None = spec("nummap")
    """model, circuit, scrubbed, empty: IOI loss (nats)."""
    ioi_mean_ld: Mapping[str, float] | None = spec("nummap")
    model_parameters: int | None = spec("int")
    ladder_equivalent_params: float | None = spec("num")
    ladder_position: str | None = spec("str")
    times_smaller: float | None = spec("num")
    placements: Mapping[str, Any] | None = spec("map", opt=True)
    ladder_basis: str | None = spec("str", opt=True)
    ladder: list[Any] | None = spec("list", opt=True)


@dataclass(frozen=True)
class MinimalityHead(PlainRecord):
    score: float | None = spec("num")
    score_pct_of_F_M: float | None = spec("num")
    K: tuple[str, ...] | None = spec("strs")
    needed: bool | None = spec("bool")


@dataclass(frozen=True)
class Minimality(PlainRecord):
    threshold: float | None = spec("num")
    K_tried: tuple[str, ...] | None = spec("strs")
    heads: Mapping[str, MinimalityHead] | None = spec("recmap", MinimalityHead)
    all_needed: bool | None = spec("bool")


@dataclass(frozen=True)
class AgreementGroup(PlainRecord):
    """Errors or successes of one failure set under one ablation; the intervals are null over no prompt."""

    n: int | None = spec("int")
    agreement: Interval | None = spec("ci", null=True)
    empty_agreement: float | None = spec("num")
    abs_ld_diff: Interval | None = spec("ci", null=True)
    mean_ld_model: float | None = spec("num")
    mean_ld_circuit: float | None = spec("num")


@dataclass(frozen=True)
class AgreementRow(PlainRecord):
    errors: AgreementGroup | None = spec("rec", AgreementGroup)
    successes: AgreementGroup | None = spec("rec", AgreementGroup)


@dataclass(frozen=True)
class AddBackStep(PlainRecord):
    added: tuple[str, ...] | None = spec("strs")
    error_agreement: Interval | None = spec("ci", null=True)
    success_agreement: Interval | None = spec("ci", null=True)
    abs_ld_diff_errors: float | None = spec("num")


@dataclass(frozen=True)
class AddBack(PlainRecord):
    """The greedy add-back over the errors ({} when the set had none); `stopped` null when it ran every step."""

    EMPTY_OK = True
    ablation: str | None = spec("str")
    first_step_candidates: list[Any] | None = spec("list")
    steps: tuple[AddBackStep, ...] | None = spec("reclist", AddBackStep)
    stopped: str | None = spec("str", null=True)


@dataclass(frozen=True)
class FailureSourceMeta(PlainRecord):
    """`failure_sets.source_meta`: where the failure set came from and what its groups mean."""

    path: str | None = spec("str")
    kind: str | None = spec("str")
    meaning: str | None = spec("str")
    n_errors_total: int | None = spec("int")
    n_successes_total: int | None = spec("int")
    n_errors_used: int | None = spec("int")
    n_successes_used: int | None = spec("int")
    sha256: str | None = spec("str")


@dataclass(frozen=True)
class AgreementBlock(PlainRecord):
    """One failure set of `error_agreement` (`advgen.circuits.failures`)."""

    source: FailureSourceMeta | None = spec("rec", FailureSourceMeta)
    n_prompts: int | None = spec("int")
    n_errors: int | None = spec("int")
    n_successes: int | None = spec("int")
    relabelled: int | None = spec("int")
    skipped: int | None = spec("int")
    skipped_rows: list[Any] | None = spec("list")
    single_prompt_groups: int | None = spec("int")
    settings: Mapping[str, Any] | None = spec("map")
    table: Mapping[str, AgreementRow] | None = spec("recmap", AgreementRow)
    add_back: AddBack | None = spec("rec", AddBack)


@dataclass(frozen=True)
class ClaimsDoc(PlainRecord):
    """The whole of an IOI claims.json: the header (model, circuit, n, seed, F(M), settings, the paper's ablation, MLP
    nodes), command and versions, then the table, causal scrubbing, absolute, completeness, minimality, error agreement."""

    model: str | None = spec("str")
    model_source: str | None = spec("str", null=True)
    runtime: Mapping[str, Any] | None = spec("map", opt=True)
    circuit: str | None = spec("str")
    n_heads_in_circuit: int | None = spec("int")
    n: int | None = spec("int")
    seed: int | None = spec("int")
    F_M: float | None = spec("num")
    settings: Mapping[str, Any] | None = spec("map")
    paper_setting: str | None = spec("str")
    mlp_nodes: tuple[str, ...] | None = spec("strs", opt=True)
    mlps: str | None = spec("str", opt=True)
    mlp_note: str | None = spec("str", opt=True)
    command: str | None = spec("str")
    versions: Mapping[str, Any] | None = spec("map")
    table: Mapping[str, MetricRow] | None = spec("recmap", MetricRow)
    causal_scrubbing: Scrubbing | None = spec("rec", Scrubbing)
    absolute: Absolute | None = spec("rec", Absolute)
    completeness: Mapping[str, Any] | None = spec("map")
    minimality: Minimality | None = spec("rec", Minimality)
    error_agreement: tuple[AgreementBlock, ...] | None = spec("reclist", AgreementBlock, opt=True)
    extra: Mapping[str, Any] = field(default_factory=dict)
    """What `read_claims` found beside the IOI fields (a task check-claim's header): never written by `to_dict`."""

    @classmethod
    def from_dict(cls, d: Any, where: str | Path) -> ClaimsDoc:
        """The current IOI shape, strictly; `read_claims` reads older and partial ones too."""
        return load_record(cls, d, str(where), "", strict=True)

    @property
    def paper_row(self) -> MetricRow | None:
        """The table's row under the paper's ablation (None: no such row, or no paper setting recorded)."""
        return (self.table or {}).get(self.paper_setting) if self.paper_setting is not None else None


def read_claims(d: Any, where: str | Path) -> ClaimsDoc:
    """Any claims.json, typed: fields older or task documents lack are None; a field of the wrong type is an error."""
    w = str(where)
    doc = load_record(ClaimsDoc, d, w, "", strict=False)
    names = set(ClaimsDoc.__dataclass_fields__)
    extra = {k: v for k, v in f.obj(d, w, "").items() if k not in names}
    return ClaimsDoc(**{k: getattr(doc, k) for k in names if k != "extra"}, extra=extra)


def load_claims(path: Path) -> ClaimsDoc | None:
    """PATH/claims.json (or the file PATH) read by `read_claims`; None when it is absent."""
    p = path / "claims.json" if path.is_dir() else path
    if not p.exists():
        return None
    return read_claims(files.read_json(p), p)


def claims_doc(header: Mapping[str, Any], command: str, versions: Mapping[str, Any], parts: Mapping[str, Any]) -> ClaimsDoc:
    """The record `write_claims` writes, from check_claim's in-memory blocks (checked like a file)."""
    doc = {**header, "command": command, "versions": versions, **parts}
    unknown = sorted(set(doc) - set(ClaimsDoc.__dataclass_fields__) - {"extra"})
    if unknown:
        raise AdvgenError(f"claims.json (writing): fields {unknown} are not in ClaimsDoc")
    return ClaimsDoc.from_dict(doc, "claims.json (writing)")
