"""HTML reports: each analysis writes a section; `assemble_report` joins them into one page.

A section is plain data (`Section`: text, tables, figures), saved as
`section.json` beside its figures, so the demo job, the CLI commands and the
viewer can assemble whichever sections exist. Every figure and table must say
what data made it (`source`), so a reader can trace each number to a command.
"""

from .html import Figure, Section, Table, assemble_report, load_section, render_section, write_section

__all__ = ["Figure", "Section", "Table", "assemble_report", "load_section", "render_section", "write_section"]
