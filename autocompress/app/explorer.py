"""The Pareto explorer: a thin Streamlit page over ``autocompress.app.logic``.

Started by ``autocompress explore [RUN_DIR]`` (which sets ``AUTOCOMPRESS_RUNS_DIR`` and
``AUTOCOMPRESS_RUN``), by ``streamlit run app/explorer.py -- RUN_DIR`` from a checkout (which
imports ``main`` and calls it with the run), or directly: ``streamlit run autocompress/app/explorer.py``.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import streamlit as st

from autocompress.app import logic
from autocompress.exceptions import AutoCompressError
from autocompress.results import interval_line, latency_text
from autocompress.units import format_bytes, format_ms

REFRESH_S = 3.0


def pick_run(run: Path | None = None) -> Path | None:
    env_run = str(run) if run is not None else os.environ.get("AUTOCOMPRESS_RUN")
    default_runs = str(run.parent) if run is not None else os.environ.get("AUTOCOMPRESS_RUNS_DIR", "runs")
    runs_dir = Path(st.sidebar.text_input("Runs folder", default_runs))
    runs = logic.list_runs(runs_dir)
    if env_run and Path(env_run) not in runs:
        runs.insert(0, Path(env_run))
    if not runs:
        st.warning(f"No runs in {runs_dir.resolve()}. Start one with `autocompress search --target cpu "
                   "--budget 1ms`, or pass a run directory: `autocompress explore runs/<run>`.")  # fmt: skip
        return None
    index = runs.index(Path(env_run)) if env_run and Path(env_run) in runs else 0
    return st.sidebar.selectbox("Run", runs, index=index, format_func=lambda p: p.name, key="run")


@st.fragment(run_every=REFRESH_S)
def watch(run_dir: Path, stamp: tuple[float, ...]) -> None:
    """Rerun the page when the search writes a new trials table (never otherwise)."""
    if st.session_state.get("auto_refresh", True) and logic.data_stamp(run_dir) != stamp:
        st.rerun()


def show_summary(view: logic.RunView) -> dict:
    s = logic.summary(view.config, view.trials)
    st.title(f"Run {view.run_dir.name}")
    c = st.columns(3) + st.columns(3)
    c[0].metric("Target", s["target"] or "?")
    c[1].metric("Budget", s["budget"])
    c[2].metric("Latency figures", s["latency_source"].upper() if s["estimated"] else s["latency_source"])
    c[3].metric("Sampler", s["sampler"] or "?")
    c[4].metric("Trials done", f"{s['trials_done']} / {s['trials_requested']}")
    c[5].metric("Within budget", s["feasible"])
    note = f"space {s['space']}, data {s['dataset']}; latency source: {s['latency_label']}"
    if s["pareto"]:
        note += (f"; {s['front']} on the accuracy–latency front, {s['pareto']} on the Pareto set"
                 + (f"; {s['far_below_note']}" if s["far_below_note"] else ""))  # fmt: skip
    if s["trials_failed"] or s["trials_running"]:
        note += f"; {s['trials_failed']} failed, {s['trials_running']} running"
    (st.warning if s["estimated"] else st.caption)(
        ("Latency and energy are ESTIMATED for this device (not measured on it). " if s["estimated"] else "")
        + note
    )
    if (budget := logic.budget_note(view.config)) is not None:
        st.warning(budget[0].upper() + budget[1:])
    if s.get("finalize_note"):
        st.info(s["finalize_note"][0].upper() + s["finalize_note"][1:])
    return s


def sidebar_filters(config: dict, df) -> logic.Filters:  # noqa: ANN001
    sb = st.sidebar
    sb.header("Filters")
    max_lat = sb.number_input("Max latency (ms)", min_value=0.0, value=None, step=0.01, format="%.4f",
                              key="f_max_latency")  # fmt: skip
    min_acc = sb.number_input("Min accuracy (%)", min_value=0.0, max_value=100.0, value=None, step=0.5,
                              key="f_min_accuracy", help="validation accuracy, as the search chose")  # fmt: skip
    max_kb = sb.number_input("Max size (KB)", min_value=0.0, value=None, step=1.0, key="f_max_size")
    options, hi = logic.filter_bounds(config, df)
    precs = sb.multiselect("Precisions allowed", options, default=options, key="f_precisions")
    hi = max(hi, 0.01)
    prune = sb.slider("Pruning ratio (stage mean)", 0.0, hi, (0.0, hi), step=0.01, key="f_prune")
    only = sb.checkbox("Pareto set only", value=False, key="f_only_pareto")
    return logic.Filters(max_lat, min_acc, max_kb, tuple(precs), (float(prune[0]), float(prune[1])), only)


def show_detail(view: logic.RunView, df, teacher, s: dict) -> None:  # noqa: ANN001
    st.subheader("Candidate")
    numbers = [int(n) for n in df["number"]]
    first = logic.default_choice(df)
    trial = st.selectbox("Trial", numbers, index=numbers.index(first) if first in numbers else 0, key="detail",
                         format_func=lambda n: f"trial {n}: {df.set_index('number').loc[n, 'candidate']}")  # fmt: skip
    row = df.set_index("number").loc[trial]
    row["number"] = trial
    est = " (est.)" if s["estimated"] else ""
    c = st.columns(6)
    c[0].metric("Val accuracy", f"{row['val_acc_pct']:.2f}%")
    c[1].metric("Test accuracy", f"{row['test_acc_pct']:.2f}%")
    c[2].metric("Latency" + est, format_ms(float(row["latency_ms"])))
    c[3].metric("Size", format_bytes(float(row["size_bytes"])))
    c[4].metric("Params", f"{int(row['params']):,}")
    c[5].metric("MACs", f"{int(row['macs']):,}")
    st.caption(f"latency: {latency_text(row, est)}; {interval_line(view.config, row.get('latency_band'))}")
    name = logic.reference_name(teacher)
    if teacher is not None and int(teacher["number"]) != trial:
        d = logic.teacher_deltas(row, teacher)
        st.markdown("**vs your original model** (as loaded: the distillation teacher, uncompressed)" if name == "original"
                    else f"**vs the fp32 teacher** (trial {int(teacher['number'])}, the largest network)")  # fmt: skip
        t = st.columns(3)
        t[0].metric(f"Test accuracy vs {name}", f"{row['test_acc_pct']:.2f}%", f"{d['test_accuracy_pp']:+.2f} pp")
        t[1].metric(f"Latency vs {name}" + est, format_ms(float(row["latency_ms"])),
                    f"{d['latency_pct']:+.1f}% ({1 / d['speedup_x']:.2f}x the {name}'s)", delta_color="inverse")  # fmt: skip
        t[2].metric(f"Size vs {name}", format_bytes(float(row["size_bytes"])),
                    f"{d['size_pct']:+.1f}% ({1 / d['compression_x']:.2f}x the {name}'s)", delta_color="inverse")  # fmt: skip
    elif teacher is None:
        st.info("The fp32 teacher (the seeded largest network) has no completed trial in this run: no deltas.")
    else:
        st.caption("This is the fp32 teacher (the largest network).")
    left, right = st.columns(2)
    with left:
        st.markdown("**Architecture, pruning and precision per part**")
        st.dataframe(logic.parts(view.config, row), hide_index=True, key="stages")
        kd = logic.kd_settings(row)
        shape = "x".join(str(v) for v in logic.input_shape(view.config, row))
        st.markdown(
            f"**Distillation**: alpha {kd['alpha']:g}, temperature {kd['temperature']:g}, "
            f"{kd['finetune_steps']} fine-tune steps" + ("" if kd["distilled"] else " (no KD)")
            + f"; input {shape}"
        )
    with right:
        st.markdown(f"**Predicted latency per block on {s['target']}**" + (" (ESTIMATED)" if s["estimated"] else ""))
        try:
            bd = logic.latency_breakdown(view.config, row)
        except AutoCompressError as exc:
            st.warning(f"No breakdown: {exc}")
        else:
            st.plotly_chart(logic.breakdown_figure(bd, estimated=s["estimated"]), key="breakdown")
            total = float(bd["latency_ms"].sum())
            if abs(total - float(row["latency_ms"])) > 0.01 * float(row["latency_ms"]):
                st.caption(f"The target's table changed since the search: it now predicts {format_ms(total)}.")
    show_export(view, trial)


def show_export(view: logic.RunView, trial: int) -> None:
    from autocompress.export import export_trial

    st.markdown("**Export**")
    c = st.columns([1, 1, 3])
    fmt = c[0].radio("Format", ["onnx", "openvino"], horizontal=True, key="export_format")
    out_dir = view.run_dir / "exports" / f"trial_{trial:04d}-{fmt}"
    if c[1].button(f"Export trial {trial}", key="export"):
        with st.spinner("Exporting, re-checking accuracy on the exported file, timing it here..."):
            try:
                result = export_trial(view.run_dir, out_dir=out_dir, fmt=fmt, trial=trial, overwrite=True)
            except (AutoCompressError, OSError) as exc:
                st.error(f"Export failed: {exc}")
            else:
                st.session_state["exported"] = (str(result.out_dir), [str(f) for f in result.files])
    done = st.session_state.get("exported")
    if done and done[0] == str(out_dir) and out_dir.is_dir():
        files = [Path(f) for f in done[1]]
        st.success(f"Exported to {out_dir}")
        d = st.columns(2)
        if len(files) == 1:
            d[0].download_button(f"Download {files[0].name}", files[0].read_bytes(), files[0].name,
                                 mime="application/octet-stream", key="dl_model")  # fmt: skip
        else:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                for f in files:
                    z.write(f, f.name)
            d[0].download_button(f"Download {out_dir.name}.zip", buf.getvalue(), f"{out_dir.name}.zip",
                                 mime="application/zip", key="dl_model")  # fmt: skip
        card = out_dir / "model_card.md"
        d[1].download_button("Download model_card.md", card.read_bytes(), card.name, mime="text/markdown",
                             key="dl_card")  # fmt: skip


def main(run: Path | None = None) -> None:
    """The page, one Streamlit run; ``run`` (else ``$AUTOCOMPRESS_RUN``) is the run shown first."""
    st.set_page_config(page_title="autocompress explorer", layout="wide")
    st.sidebar.title("autocompress")
    run_dir = pick_run(run)
    if run_dir is None:
        return
    st.sidebar.toggle("Auto-refresh while a search writes", value=True, key="auto_refresh")
    view = logic.load_view(run_dir)
    watch(run_dir, logic.data_stamp(run_dir))
    if not view.ok:
        st.title(f"Run {run_dir.name}")
        (st.error if view.level == "error" else st.info)(view.problem)
        return
    s = show_summary(view)
    df = logic.candidates(view.trials, view.config.get("accuracy_window_pp"), view.config.get("kind"))
    filters = sidebar_filters(view.config, df)
    shown = logic.apply_filters(df, filters)

    st.subheader("Pareto front")
    c = st.columns(3)
    x = c[0].radio("x axis", list(logic.X_AXES), horizontal=True, key="x_axis")
    y = c[1].radio("accuracy", list(logic.Y_AXES), horizontal=True, key="y_axis")
    color = c[2].radio("colour by", ["size", "precision"], horizontal=True, key="colour")
    if shown.empty:
        st.info("No candidate matches the filters.")
    elif x == "energy" and ("energy_mj" not in shown or shown["energy_mj"].isna().all()):
        st.info(f"No energy figures in this run: the latency table of {view.config.get('target')} records no "
                "power figure, so energy was not predicted. Plot against latency or size instead.")  # fmt: skip
    else:
        st.plotly_chart(logic.pareto_figure(shown, view.config, x=x, y=y, color=color), key="pareto")

    st.subheader("Candidates")
    st.caption(f"{len(shown)} of {len(df)} candidates match the filters (click a column to sort).")
    st.dataframe(logic.table(shown, estimated=s["estimated"]), hide_index=True, key="table")

    if shown.empty:
        return
    # the deltas' reference: a user's model run's original model (as the search's table), else the fp32 teacher
    teacher = logic.original(view.config)
    teacher = logic.teacher(view.trials) if teacher is None else teacher
    show_detail(view, shown, teacher, s)

    st.subheader("Compare")
    numbers = [int(n) for n in shown["number"]]
    ranked = shown.sort_values(["pareto", "val_accuracy"], ascending=[False, False])["number"]
    picked = st.multiselect("Trials to compare", numbers, default=[int(n) for n in ranked[:2]], key="compare")
    if len(picked) < 2:
        st.info("Pick two or more trials to compare them side by side.")
    else:
        rows = []
        for n in picked:
            r = shown.set_index("number").loc[n].copy()
            r["number"] = n
            rows.append(r)
        name = logic.reference_name(teacher)
        st.dataframe(logic.compare(rows, ref=teacher, config=view.config, ref_name=name), key="compare_table")


if __name__ == "__main__":  # Streamlit runs this file as __main__; an import only defines the page
    main()
