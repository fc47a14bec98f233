"""One declaration per SLO in, multiwindow multi-burn-rate rules out (Google SRE workbook, chapter 5).

A declaration names the SLI as two PromQL expressions over a ``$window``: the rate of bad events and the rate of all
events. For every SLO the generator writes

- recording rules ``slo:sli_error:ratio_rate<window>{slo, service}`` for each window the alerts and dashboards use;
- ``slo:objective:ratio{slo, service}``: the objective from the site file, so dashboards read it from Prometheus;
- one alert ``<Name>BudgetBurn`` in two severities: ``critical`` (page) when 2 % of a 30-day budget burns in an hour
  (1 h and 5 m windows above 14.4x) or 5 % in six hours (6 h / 30 m above 6x), ``warning`` (ticket) when 10 % burns
  in a day (1 d / 2 h above 3x) or in three days (3 d / 6 h above 1x). The short window makes the alert stop soon
  after the burn stops.

The objective is a Helm value (``.Values.site.slo.<objective>``, a percentage), so the rules are written as a Helm
template: ``{{ $availability }}`` is replaced when Argo CD renders the monitoring app.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from homelab_common.site import SloObjectives

#: Every window a rule or a dashboard reads; PERIOD is the budget period the dashboards show (Prometheus keeps 15 d).
PERIOD = "14d"
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", PERIOD)


@dataclass(frozen=True)
class BurnWindow:
    long: str
    short: str
    factor: float
    severity: Literal["critical", "warning"]


#: The SRE workbook's recommended pairs for a 30-day budget: two that page, two that open a ticket.
BURN_WINDOWS = (
    BurnWindow("1h", "5m", 14.4, "critical"),
    BurnWindow("6h", "30m", 6, "critical"),
    BurnWindow("1d", "2h", 3, "warning"),
    BurnWindow("3d", "6h", 1, "warning"),
)

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class Runbook(BaseModel):
    """The parts of the alert's runbook page that only the SLO's author knows."""

    model_config = ConfigDict(extra="forbid")
    check: str = Field(min_length=1)
    fix: str = Field(min_length=1)


class Slo(BaseModel):
    """One SLO: which service, what counts as good (``description``), and the SLI as PromQL over ``$window``."""

    model_config = ConfigDict(extra="forbid")
    name: str
    service: str
    #: Which objective of the site file's ``slo`` block applies (a percentage there).
    objective: Literal["availability", "durability"] = "availability"
    description: str = Field(min_length=1)
    errors: str
    total: str
    runbook: Runbook

    @field_validator("name")
    @classmethod
    def _kebab(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use lowercase words joined by '-', e.g. dns-availability")
        return value

    @field_validator("errors", "total")
    @classmethod
    def _windowed(cls, value: str) -> str:
        if "$window" not in value:
            raise ValueError("the expression must contain $window (e.g. rate(metric[$window]))")
        return value.strip()

    @property
    def alert(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("-")) + "BudgetBurn"

    @property
    def runbook_page(self) -> str:
        return f"slo-{self.name}.md"

    @property
    def runbook_path(self) -> str:
        return f"docs/runbooks/{self.runbook_page}"

    def ratio(self, window: str) -> str:
        errors = self.errors.replace("$window", window)
        total = self.total.replace("$window", window)
        return f"({errors})\n/\n({total})"


def load_slos(data: dict[str, Any]) -> list[Slo]:
    """``{"slos": {name: declaration}}`` → validated SLOs; mistakes raise ValueError naming ``slos.<name>.<field>``."""
    from pydantic import ValidationError

    declared = data.get("slos")
    if not isinstance(declared, dict) or not declared:
        raise ValueError("slos: give a map of SLO declarations keyed by name")
    slos, problems = [], []
    for name, body in declared.items():
        try:
            slos.append(Slo.model_validate({**(body or {}), "name": name}))
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                problems.append(f"slos.{name}.{where}: {str(err['msg']).removeprefix('Value error, ')}")
    if problems:
        raise ValueError("\n".join(problems))
    return slos


def _selector(slo: Slo) -> str:
    return f'{{slo="{slo.name}"}}'


def _threshold(slo: Slo, factor: float) -> str:
    return f"({factor:g} * (1 - {{{{ ${slo.objective} }}}} / 100))"


def _burn(slo: Slo, window: BurnWindow) -> str:
    threshold = _threshold(slo, window.factor)
    return (
        f"(\n  slo:sli_error:ratio_rate{window.long}{_selector(slo)} > {threshold}\n"
        f"  and\n  slo:sli_error:ratio_rate{window.short}{_selector(slo)} > {threshold}\n)"
    )


def rule_group(slo: Slo, runbook_base: str) -> dict[str, Any]:
    """The Prometheus rule group of one SLO (its threshold still a Helm expression)."""
    labels = {"slo": slo.name, "service": slo.service}
    rules: list[dict[str, Any]] = [
        {"record": f"slo:sli_error:ratio_rate{w}", "expr": slo.ratio(w), "labels": labels} for w in WINDOWS
    ]
    rules.append(
        {"record": "slo:objective:ratio", "expr": f"vector({{{{ ${slo.objective} }}}} / 100)", "labels": labels}
    )
    for severity, meaning in (("critical", "page"), ("warning", "ticket")):
        pairs = [w for w in BURN_WINDOWS if w.severity == severity]
        spans = " or ".join(f"{w.long}/{w.short} at {w.factor:g}x" for w in pairs)
        rules.append(
            {
                "alert": slo.alert,
                "expr": "\nor\n".join(_burn(slo, w) for w in pairs),
                "labels": {**labels, "severity": severity},
                "annotations": {
                    "summary": f"{slo.service}: the {slo.name} SLO burns its error budget too fast ({meaning})",
                    "description": f"{slo.description} Burn rate above the {meaning} threshold ({spans}).",
                    "runbook_url": f"{runbook_base}/{slo.runbook_page}",
                },
            }
        )
    return {"name": f"slo-{slo.name}", "rules": rules}


def objective_defaults() -> dict[str, float]:
    """The site file's defaults, used when the site block has no ``slo`` (one source: homelab_common.site)."""
    return SloObjectives().model_dump()
