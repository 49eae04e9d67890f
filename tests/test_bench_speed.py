"""bench.bench_speed's memory table: sizes that would not fit are estimated, never started."""

from __future__ import annotations

from bench import bench_speed


def test_training_memory_extrapolates_what_would_not_fit(monkeypatch, capsys):
    started = []

    def fake_run(task, size, variant, threads):  # activations ∝ pixels; the reference 3x ours
        started.append((size, variant))
        factor = 3.0 if variant == bench_speed.BASELINE else 0.2 if variant == "diffir-ckpt" else 1.0
        return {"backward_mb": factor * size * size / 100, "step_mb": factor * size * size / 100 + 10}

    monkeypatch.setattr(bench_speed, "memory_run", fake_run)
    monkeypatch.setattr(bench_speed, "available_mb", lambda: 9_000.0)
    memory = bench_speed.training_memory("deblur", [512, 128, 256], threads=1)
    # 512²: reference ~7.9 GB and diffir ~2.6 GB estimates exceed 80 % of 9 GB only for the reference run
    reference = bench_speed.BASELINE
    assert (512, reference) not in started and (512, "diffir") in started and (512, "diffir-ckpt") in started
    assert memory[512][reference]["extrapolated_from"] == 256
    assert memory[512][reference]["backward_mb"] == 4 * memory[256][reference]["backward_mb"]
    assert list(memory) == [128, 256, 512]
    bench_speed.print_memory("deblur", memory)
    out = capsys.readouterr().out
    assert "~7864" in out and "extrapolated" in out and "0.20" in out
