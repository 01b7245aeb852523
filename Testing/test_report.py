"""Report sections: saved as data, rendered with their sources, assembled into one page."""

from __future__ import annotations

import pytest

from MedSegLensLib.errors import InputError
from MedSegLensLib.report import Figure, Section, Table, assemble_report, load_section, write_section


def _png(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path)
    plt.close(fig)


def test_sections_round_trip_and_assemble_with_sources(tmp_path):
    folder = tmp_path / "diff"
    folder.mkdir()
    _png(folder / "fig.png")
    section = Section(
        key="diff",
        title="Model diffing <populations>",
        paragraphs=["12 shared latents"],
        tables=[Table("Counts", ["population", "shared"], [["adult", 12], ["ssa", 0.5]], source="store X, seed 0")],
        figures=[Figure("fig.png", "Matched cosine", source="SAEs A and B")],
        command="medseglens diff --x",
    )
    write_section(section, folder)
    assert load_section(folder) == section
    page = assemble_report([folder, tmp_path / "absent"], tmp_path / "report" / "index.html", "Study")
    text = page.read_text()
    assert 'src="../diff/fig.png"' in text
    assert "Data: SAEs A and B" in text and "Data: store X, seed 0" in text
    assert "Model diffing &lt;populations&gt;" in text  # escaped
    assert "<td>0.500</td>" in text and "medseglens diff --x" in text


def test_section_with_missing_figure_is_refused(tmp_path):
    section = Section(key="k", title="t", figures=[Figure("nope.png", "c", "s")])
    with pytest.raises(InputError, match="nope.png"):
        write_section(section, tmp_path)
    assert not (tmp_path / "section.json").exists()
