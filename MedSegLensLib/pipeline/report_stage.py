"""Stage `report`: one HTML page with a section per stage and the stage timings."""

from __future__ import annotations

import json
from pathlib import Path

from ..report import Section, Table, assemble_report, write_section
from .cohorts import section_dir
from .stages import RUN_RECORD, Stage, StageContext

REPORT_DIR = "report"
REPORT_FILE = "report.html"


def report_path(work: Path) -> Path:
    return work / REPORT_DIR / REPORT_FILE


def report_stage(stages: list[Stage], section_folders: list[Path]):
    """The report stage's work: `section_folders` (relative to the work folder) in order, then the timing section."""

    def run(ctx: StageContext) -> dict:
        record = json.loads((ctx.work / RUN_RECORD).read_text(encoding="utf-8"))["stages"]
        rows = [
            [s.name, s.title, ", ".join(s.deps) or "—", record.get(s.name, {}).get("built_seconds", "—")]
            for s in stages
            if s.name != "report"
        ]
        total = sum(r[3] for r in rows if isinstance(r[3], (int, float)))
        timing = section_dir(ctx.work, "report")
        first_load = record[stages[0].name].get("load_before") if stages[0].name in record else None
        write_section(
            Section(
                "report",
                "Stage report: the pipeline and its timings",
                [
                    f"The demo job ran these stages, each cached under a content key (its settings and the runs of the "
                    f"stages it depends on): {total / 60:.1f} minutes of work in all; load average {first_load} when "
                    "the "
                    "first stage started (other jobs on the machine slow every stage down)."
                ],
                [
                    Table(
                        "Stages",
                        ["stage", "what it does", "depends on", "seconds (when it was built)"],
                        rows,
                        f"{RUN_RECORD} and .stages/<stage>.done.json",
                    )
                ],
                command="medseglens demo --no-serve",
            ),
            timing,
        )
        out = assemble_report(
            [*(ctx.work / f for f in section_folders), timing], report_path(ctx.work), "MedSegLens demo report"
        )
        return {"report": str(out)}

    return run
