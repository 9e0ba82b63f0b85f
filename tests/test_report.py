"""``seqrl report DIR`` rebuilds a bench run's tables and plots from its files alone, and the suites' plots
read at a glance: a title and axis labels with units on every panel, one line per configuration with the
seeds as a shaded band (not one line per seed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from seqrl.bench.report import seed_band  # noqa: E402
from seqrl.bench.runner import run_suite  # noqa: E402
from seqrl.bench.seq2seq import Seq2SeqSuite  # noqa: E402
from seqrl.bench.suite import RunRecord  # noqa: E402
from seqrl.cli import main  # noqa: E402

TINY = dict(hidden_size=8, num_layers=1, max_epochs=3, test_size=100, snis_samples=500, log_z_samples=1000,
            kl_samples=200, motif_samples=100, distill_samples=100, training1_steps=5, dpg_steps=4, eval_every=2,
            episodes_per_step=50, patience=2)


@pytest.fixture(scope="module")
def gam_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """A two-seed gam run (r and dpg_off) and what it printed."""
    out = tmp_path_factory.mktemp("gam")
    printed: list[str] = []
    run_suite("gam", out=out, seeds=[1, 2], algos=["mle", "dpg_off"], settings=TINY, device="cpu", progress=False,
              grid={"sizes": ["50", "100"], "masks": ["1001111"], "motifs": ["1000101000101"]}, echo=printed.append)
    return out, printed


@pytest.fixture
def figures(monkeypatch) -> list[Figure]:
    """Every figure saved while the test runs (the suites close them after saving)."""
    saved: list[Figure] = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        saved.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


def panels(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def bands(ax) -> int:
    return sum(isinstance(c, PolyCollection) for c in ax.collections)


def test_report_rebuilds_the_tables_and_plots_from_the_folder(gam_run, capsys, figures):
    out, printed = gam_run
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for plot in ("gam_ce_vs_D.png", "gam_kl_curves.png", "gam_curves.json"):
        (out / plot).unlink()
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(printed[0])  # the suite's table and the paired table, as the run printed them
    assert "Paired by seed" in printed[0]
    assert (out / "report.txt").read_text() == printed[0] + "\n"
    assert (out / "gam_curves.json").read_bytes() == before["gam_curves.json"]  # curves from runs.jsonl
    for name in ("gam_ce_vs_D.png", "gam_kl_curves.png", "results.json", "results.csv", "runs.jsonl"):
        assert (out / name).is_file()
    assert (out / "results.json").read_bytes() == before["results.json"]  # nothing rerun, nothing rewritten
    assert len(figures) == 2


def test_gam_plots_have_titles_units_and_seed_bands(gam_run, tmp_path, figures):
    out, _ = gam_run
    assert main(["report", str(out), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gam_ce_vs_D.png", "gam_curves.json", "gam_kl_curves.png",
                                                          "report.txt"]
    ce_fig, kl_fig = figures
    assert ce_fig.get_suptitle() and kl_fig.get_suptitle()
    ce_ax, freq_ax = panels(ce_fig)
    assert "nats per sequence" in ce_ax.get_ylabel() and "fraction" in freq_ax.get_ylabel()
    assert "|D|" in freq_ax.get_xlabel() and ce_ax.get_title() and freq_ax.get_title()
    # r and dpg_off: one line each over both seeds (and H(p_true)), each with its band.
    assert [line.get_label() for line in ce_ax.get_lines()] == ["r (mle) (2 seeds)", "dpg_off (2 seeds)",
                                                                "H(p_true)"]
    assert bands(ce_ax) == 2 and bands(freq_ax) == 2
    kl_axes = panels(kl_fig)
    assert [ax.get_title() for ax in kl_axes] == ["|D| = 50", "|D| = 100"]
    for ax in kl_axes:
        assert "KL" in ax.get_ylabel() and "nats" in ax.get_ylabel() and "episodes" in ax.get_xlabel()
        assert [line.get_label() for line in ax.get_lines()] == ["dpg_off (2 seeds)"] and bands(ax) == 1


def test_seq2seq_plot_separates_scratch_from_fine_tuning_and_bands_the_seeds(tmp_path, figures):
    suite = Seq2SeqSuite()
    for seed, shift in ((0, 0.0), (1, 2.0)):
        suite.curves.append({"algorithm": "mle_pretrained", "seed": seed, "from_scratch": True,
                             "points": [{"step": s, "valid_bleu": 10.0 * s + shift} for s in (10, 20, 30)]})
        suite.curves.append({"algorithm": "reinforce", "seed": seed, "from_scratch": False,
                             "points": [{"step": s, "valid_bleu": 50.0 + s + shift} for s in (0, 5)]})
    suite.plot([RunRecord("mle", 0, {}, {})], tmp_path)
    (fig,) = figures
    scratch_ax, finetune_ax = panels(fig)
    assert "random start" in scratch_ax.get_title() and "fine-tuning" in finetune_ax.get_title()
    for ax in (scratch_ax, finetune_ax):
        assert ax.get_xlabel() == "optimizer steps" and "BLEU" in ax.get_ylabel() and "0–100" in ax.get_ylabel()
        assert len(ax.get_lines()) == 1 and bands(ax) == 1
    (line,) = scratch_ax.get_lines()
    assert line.get_label() == "mle_pretrained (2 seeds)" and list(line.get_ydata()) == [101.0, 201.0, 301.0]
    assert (tmp_path / "seq2seq_valid_bleu.png").is_file()


def test_seed_band_is_the_mean_with_a_min_max_band():
    fig, ax = plt.subplots()
    line = seed_band(ax, [[(0, 1.0), (1, 3.0), (2, 5.0)], [(0, 3.0), (1, math.nan)]], label="a")
    assert list(line.get_xdata()) == [0.0, 1.0, 2.0] and list(line.get_ydata()) == [2.0, 3.0, 5.0]
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert min(ys) == 1.0 and max(ys) == 5.0 and line.get_label() == "a (2 seeds)"
    single = seed_band(ax, [[(0, 1.0)]], label="b")
    assert single.get_label() == "b" and len(ax.collections) == 1  # one seed: a line, no band
    assert seed_band(ax, [[(0, math.nan)]], label="c") is None
    plt.close(fig)


def test_report_of_a_folder_without_results_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results.json in" in err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "results.json").write_text(json.dumps({"suite": "gam", "runs": []}))
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no runs" in capsys.readouterr().err
