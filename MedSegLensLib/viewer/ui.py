"""The page: case list, "Why" panel and image controls on the left, three slice views, latents and steering on
the right.

Element ids (`case-<id>`, `risk-<id>`, `why-latent-<latent>`, `uncertainty-toggle`, `modality-<m>`,
`overlay-<name>`, `seg-<source>`, `steer-<latent>`, `strength-<latent>`, `accept`) and each view's
`#view-<name>` label are what the browser tests click and read.
"""

from __future__ import annotations

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v3

from .app import NO_SELECTION, UNCERTAINTY

LEFT_WIDTH = 320
RIGHT_WIDTH = 500
# (latent_browser.COLUMNS index, title) in the order shown: a header click sorts by that column
LATENT_HEADERS = ((0, "#"), (1, "category"), (5, "conf."), (2, "name"), (3, "here / typical"), (4, "spec."))
ONE_LINE = "white-space: nowrap; overflow: hidden; text-overflow: ellipsis;"
# The page is one Vue template: every state change (a progress step, a steering result) re-renders all of it. The
# long lists' rows re-render only when what they show changes (Vue's v-memo): the latent table is two thirds of the
# page's elements, and skipping its rows halved the time from a state change to the painted page (45 -> 24 ms
# median in headless Chromium, 2 shared cores; docs/viewer.md, "Steering update latency").
LATENT_ROW_DEPENDS = "[o, o.name === overlay_name, steer_available, steer_choices, steer_latents]"
CASE_ROW_DEPENDS = "[c, c.case_id === case_id]"


def build_ui(server, layout_manager) -> VAppLayout:
    with VAppLayout(server, full_height=True, theme="dark") as layout:
        with v3.VAppBar(density="compact"):
            v3.VToolbarTitle("MedSegLens", classes="flex-grow-0 mr-4")
            html.Span("{{ case_title }}", id="case-title", classes="text-body-2")
            v3.VSpacer()
            html.Span(
                "{{ message }}",
                id="message",
                classes=("message_error ? 'text-error text-body-2 mr-4' : 'text-medium-emphasis text-body-2 mr-4'",),
            )
            v3.VProgressLinear(
                indeterminate=("!!trame__busy",),
                active=("!!trame__busy",),
                absolute=True,
                location="bottom",
                color="primary",
            )
        with v3.VNavigationDrawer(permanent=True, location="left", width=LEFT_WIDTH):
            _case_list()
            v3.VDivider()
            _why_panel()
            _image_controls(server)
            v3.VDivider()
            _model_controls(server)
        with v3.VNavigationDrawer(permanent=True, location="right", width=RIGHT_WIDTH):
            _latent_browser(server)
            v3.VDivider()
            _steering_panel(server)
        with v3.VMain(), html.Div(style="display: flex; height: calc(100vh - 48px);"):
            layout_manager.initialize_layout_grid(layout)
    return layout


def _section(title: str) -> None:
    html.Div(title, classes="text-overline px-3 pt-2")


def _case_list() -> None:
    _section("Cases")
    with v3.VList(density="compact", nav=True, max_height=280, classes="overflow-y-auto"):
        with v3.VListItem(
            v_for="c in cases",
            key="c.case_id",
            id=("'case-' + c.case_id",),
            active=("c.case_id === case_id",),
            click="case_id = c.case_id",
            raw_attrs=[f'v-memo="{CASE_ROW_DEPENDS}"'],
        ):
            v3.VListItemTitle("{{ c.case_id }}")
            v3.VListItemSubtitle("{{ c.population }} · {{ c.dice }}")
            with v3.Template(v_slot_append=True):
                v3.VChip(
                    "#{{ c.rank }} · {{ c.risk }}",
                    v_if="c.rank",
                    id=("'risk-' + c.case_id",),
                    title="rank in the triage worklist · SAE failure risk",
                    color="warning",
                    size="x-small",
                    label=True,
                    classes="mr-1",
                )
                v3.VChip("failure", v_if="c.failure", color="error", size="x-small", label=True)


def _why_panel() -> None:
    """The shown case's line in the triage worklist: rank, risk, top latents (a click shows one), the baselines,
    and the uncertainty map toggle. Only with a worklist (`triage` in workspace.json)."""
    with html.Div(v_if="triage_on", id="why-panel"):
        _section("Why (triage)")
        with html.Div(classes="px-3 pb-2 text-caption"):
            html.Div("{{ why_note }}", v_if="why_note", classes="text-warning", id="why-note")
            with html.Div(v_if="why"):
                html.Div(
                    "rank {{ why.rank }} of {{ why.of }} · SAE risk {{ why.risk }} · reference: {{ why.failure }}",
                    classes="text-body-2",
                    id="why-summary",
                )
                html.Div("top latents (activation share above usual)", classes="text-medium-emphasis mt-1")
                with v3.VTable(density="compact", classes="text-caption", id="why-latents"):
                    with html.Tbody():
                        with html.Tr(
                            v_for="t in why.latents",
                            key="t.latent",
                            id=("'why-latent-' + t.latent",),
                            click="why_clickable && (overlay_name = t.name)",
                            title=("t.description",),
                            style=("why_clickable ? 'cursor: pointer;' : ''",),
                            classes=("t.name === overlay_name ? 'bg-primary' : ''",),
                        ):
                            html.Td("{{ t.latent }}", classes="px-1")
                            html.Td("+{{ t.excess }}", classes="px-1", style="white-space: nowrap;")
                            html.Td(
                                "{{ t.description }}",
                                classes="px-1 why-description",
                                style=f"max-width: 13em; {ONE_LINE}",
                            )
                        with html.Tr(v_if="!why.latents.length"):
                            html.Td("no top latents listed", colspan=3, classes="text-medium-emphasis")
                with html.Div(classes="mt-1", id="why-baselines"):
                    html.Span(
                        "{{ b.label }} {{ b.value }}{{ i < why.baselines.length - 1 ? ' · ' : '' }}",
                        v_for="(b, i) in why.baselines",
                        key="b.key",
                        title=("b.meaning",),
                    )
            with html.Div(id="uncertainty-toggle"):  # the tests click its input
                v3.VSwitch(
                    label="uncertainty map (softmax entropy)",
                    model_value=(f"overlay_name === '{UNCERTAINTY}'",),
                    update_modelValue=f"overlay_name = $event ? '{UNCERTAINTY}' : '{NO_SELECTION}'",
                    disabled=("!analysis_ready",),
                    color="primary",
                    density="compact",
                    hide_details=True,
                )
        v3.VDivider()


def _image_controls(server) -> None:
    _section("Image")
    with html.Div(classes="px-3"):
        with v3.VBtnToggle(v_model=("modality",), mandatory=True, density="compact", divided=True, variant="outlined"):
            v3.VBtn(
                "{{ m.title }}",
                v_for="m in modalities",
                key="m.value",
                value=("m.value",),
                id=("'modality-' + m.value",),
                size="small",
            )
        html.Div("Window / level", classes="text-caption mt-3")
        with html.Div(id="display-range"):
            v3.VRangeSlider(
                v_model=("display_range",),
                min=("display_bounds[0]",),
                max=("display_bounds[1]",),
                step=("(display_bounds[1] - display_bounds[0]) / 200",),
                hide_details=True,
                density="compact",
                strict=True,
            )
        html.Div("Segmentation", classes="text-caption mt-3")
        with v3.VBtnToggle(
            v_model=("seg_source",), mandatory=True, density="compact", divided=True, variant="outlined"
        ):
            v3.VBtn("{{ s }}", v_for="s in seg_sources", key="s", value=("s",), id=("'seg-' + s",), size="small")
            v3.VBtn("none", value=NO_SELECTION, id=f"seg-{NO_SELECTION}", size="small")
        v3.VBtn(
            "Reset views",
            click=server.controller.reset_views,
            size="small",
            variant="text",
            classes="mt-2",
            id="reset-views",
        )


def _model_controls(server) -> None:
    _section("Model")
    with html.Div(classes="px-3 pb-3"):
        html.Div("{{ model_label }}", classes="text-caption text-medium-emphasis", id="model-label")
        with html.Div(classes="d-flex mt-1"):
            v3.VBtn(
                "Run model",
                id="run-model",
                click=server.controller.run_model,
                size="small",
                color="primary",
                disabled=("!case_id || !model_ready || job_running",),
                classes="mr-2",
            )
            v3.VBtn(
                "Cancel",
                id="cancel-job",
                click=server.controller.cancel_job,
                size="small",
                variant="outlined",
                v_show="job_running",
            )
        # Progress of any worker job (model run, analysis, latent map, steering preview).
        v3.VProgressLinear(
            model_value=("job_progress || 0",), v_show="job_running", height=6, classes="mt-2", id="job-progress"
        )
        html.Div("{{ job_text }}", classes="text-caption", id="job-text")


def _latent_browser(server) -> None:
    _section("Latent browser")
    with html.Div(classes="px-3"):
        v3.VTextField(
            v_model=("latent_filter",),
            label="filter (words, or a latent number)",
            density="compact",
            hide_details=True,
            clearable=True,
            id="latent-filter",
        )
    with v3.VTable(density="compact", height=260, fixed_header=True, id="latent-table"):
        with html.Thead(), html.Tr():
            html.Th("")
            for column, title in LATENT_HEADERS:
                html.Th(
                    f"{title} {{{{ latent_sort === {column} ? (latent_descending ? '▼' : '▲') : '' }}}}",
                    click=(server.controller.sort_latents, f"[{column}]"),
                    style="cursor: pointer;",
                    id=f"sort-{column}",
                )
        with html.Tbody():
            with html.Tr(
                v_for="o in latents",
                key="o.name",
                id=("'overlay-' + o.name",),
                click="overlay_name = (overlay_name === o.name ? 'none' : o.name)",
                style="cursor: pointer;",
                title=("o.description",),
                classes=("o.name === overlay_name ? 'bg-primary' : ''",),
                raw_attrs=[f'v-memo="{LATENT_ROW_DEPENDS}"'],
            ):
                with html.Td(classes="px-1"):
                    v3.VBtn(
                        "{{ steer_latents.includes(o.latent) ? '−' : 'steer' }}",
                        size="x-small",
                        variant="tonal",
                        v_if="steer_available && steer_choices.some((c) => c.value === o.latent)",
                        id=("'steer-' + o.latent",),
                        click=(
                            "steer_latents = steer_latents.includes(o.latent) ? steer_latents.filter((x) => x !== "
                            "o.latent)"
                            " : [...steer_latents, o.latent]; $event.stopPropagation()"
                        ),
                    )
                html.Td("{{ o.latent }}", classes="px-1")
                html.Td("{{ o.category }}", classes="text-caption px-1", style=f"max-width: 7em; {ONE_LINE}")
                html.Td("{{ o.confidence }}", classes="text-caption px-1")
                html.Td("{{ o.short }}", classes="text-caption px-1 latent-name", style=f"max-width: 12em; {ONE_LINE}")
                html.Td("{{ o.activation }}", classes="text-caption px-1", style="white-space: nowrap;")
                html.Td("{{ o.specificity }}", classes="text-caption px-1", style=f"max-width: 5em; {ONE_LINE}")
            with html.Tr(v_if="!latents.length"):
                html.Td("no latents for this case (yet)", colspan=7, classes="text-medium-emphasis")
    _overlay_controls()
    _latent_details()


def _overlay_controls() -> None:
    """Threshold (activation units) and opacity, with the legend of the shown latent's heat colour map."""
    with html.Div(classes="px-3"):
        with html.Div(v_if="overlay_legend", id="overlay-legend", classes="mt-2"):
            html.Div("{{ overlay_legend.text }}", classes="text-caption", id="legend-text")
            html.Div(style=("'height: 10px; border-radius: 2px; background: ' + overlay_legend.colours",))
            with html.Div(classes="d-flex text-caption"):
                html.Span("{{ overlay_legend.low }}", id="legend-low")
                v3.VSpacer()
                html.Span(
                    "{{ overlay_legend.units }}, p{{ overlay_legend.low_percentile }}–"
                    "p{{ overlay_legend.high_percentile }} here",
                    classes="text-medium-emphasis",
                )
                v3.VSpacer()
                html.Span("{{ overlay_legend.high }}", id="legend-high")
        html.Div(
            "Threshold {{ Number(overlay_threshold).toPrecision(3) }} (transparent below) / opacity",
            classes="text-caption mt-2",
            id="threshold-text",
        )
        v3.VSlider(
            id="overlay-threshold",
            v_model=("overlay_threshold",),
            min=0,
            max=("overlay_threshold_max",),
            step=("overlay_threshold_max / 100",),
            disabled=("!overlay_legend",),
            hide_details=True,
            density="compact",
        )
        v3.VSlider(
            id="overlay-opacity",
            v_model=("overlay_opacity",),
            min=0,
            max=1,
            step=0.05,
            hide_details=True,
            density="compact",
        )


def _latent_details() -> None:
    """The selected latent: full description, notes, card, per-population firing, top cases."""
    with html.Div(
        v_if="latent_details",
        id="latent-details",
        classes="px-3 pb-2 text-caption",
        style="max-height: 260px; overflow-y: auto;",
    ):
        html.Div(
            "Latent {{ latent_details.latent }} · {{ latent_details.category || 'uncategorised' }}",
            classes="text-subtitle-2",
        )
        html.Div("{{ latent_details.description || 'no description' }}", id="latent-description")
        html.Div("{{ n }}", v_for="n in latent_details.notes", key="n", classes="text-medium-emphasis")
        html.Img(v_if="latent_details.card", src=("latent_details.card",), style="max-width: 100%;", id="latent-card")
        with v3.VTable(
            v_if="latent_details.populations && latent_details.populations.length",
            density="compact",
            classes="text-caption",
            id="latent-populations",
        ):
            with html.Thead(), html.Tr():
                for title in ("population", "fired (cases)", "mean volume", "mean peak"):
                    html.Th(title)
            with html.Tbody(), html.Tr(v_for="p in latent_details.populations", key="p.population"):
                for field in ("population", "fired", "volume", "peak"):
                    html.Td(f"{{{{ p.{field} }}}}")
        with html.Div(v_if="latent_details.top_cases && latent_details.top_cases.length", id="latent-top-cases"):
            html.Span("top cases: ")
            html.Span(
                "{{ c.case_id }} ({{ c.population }}, peak {{ c.peak }}) ",
                v_for="c in latent_details.top_cases",
                key="c.case_id",
            )


def _steering_panel(server) -> None:
    _section("Steering")
    with html.Div(classes="px-3 pb-3"):
        v3.VAlert(
            "{{ steer_note }}",
            v_if="!steer_available",
            type="info",
            density="compact",
            variant="tonal",
            classes="text-caption mb-2",
            id="steer-note",
        )
        with html.Div(classes="d-flex"):
            v3.VSelect(
                label="mode",
                v_model=("steer_mode",),
                items=("steer_modes",),
                disabled=("!steer_available",),
                density="compact",
                hide_details=True,
                classes="mr-2",
                id="steer-mode",
            )
            v3.VSelect(
                label="region",
                v_model=("steer_region",),
                items=("steer_regions",),
                disabled=("!steer_available",),
                density="compact",
                hide_details=True,
                id="steer-region",
            )
        with html.Div(v_show="steer_region === 'tumour-margin'", id="steer-margin"):
            v3.VSlider(
                v_model=("steer_margin",),
                min=0,
                max=("steer_max_margin",),
                step=1,
                label="margin mm",
                thumb_label=True,
                hide_details=True,
                density="compact",
            )
        html.Div(
            "Pick latents with 'steer' in the table; one strength each.",
            v_if="steer_available && !steer_latents.length",
            classes="text-caption text-medium-emphasis mt-2",
        )
        with html.Div(v_for="j in steer_latents", key="j", classes="d-flex align-center mt-1", id=("'strength-' + j",)):
            html.Span("{{ j }}", classes="text-caption mr-2", style="min-width: 2.5em;")
            v3.VSlider(
                model_value=("steer_strengths[j] ?? steer_neutral",),
                update_modelValue="steer_strengths = Object.assign({}, steer_strengths, {[j]: $event})",
                min=("steer_range[0]",),
                max=("steer_range[1]",),
                step=("steer_step",),
                hide_details=True,
                density="compact",
            )
            html.Span(
                "{{ steer_readout[j] || '' }}",
                classes="text-caption ml-2",
                style="min-width: 9em;",
                id=("'strength-value-' + j",),
            )
        with v3.VTable(density="compact", classes="mt-2 text-caption", id="dice-readout"):
            with html.Thead(), html.Tr():
                for title in ("Dice", "before", "after"):
                    html.Th(title)
            with html.Tbody(), html.Tr(v_for="d in dice_rows", key="d.region"):
                html.Td("{{ d.region }}")
                html.Td("{{ d.before }}")
                html.Td("{{ d.after }}", id=("'dice-after-' + d.region",))
        html.Div(
            "{{ steer_summary }}",
            classes="text-caption text-medium-emphasis",
            id="steer-summary",
            raw_attrs=[
                ':data-strengths="steer_shown.strengths"',
                ':data-kind="steer_shown.kind"',
                ':data-seconds="steer_shown.seconds"',
                ':data-views="steer_shown.views"',
            ],
        )
        v3.VBtn(
            "Accept",
            id="accept",
            click=server.controller.accept_segmentation,
            color="primary",
            block=True,
            classes="mt-3",
            disabled=("!case_id",),
        )
        with html.Div(classes="text-caption mt-1", id="accepted-list"):
            html.Div("{{ a }}", v_for="a in accepted", key="a")
