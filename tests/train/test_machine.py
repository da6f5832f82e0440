import os

from zotune.train.machine import load_average, machine_info, was_loaded


def test_a_run_is_loaded_when_its_mean_load_exceeds_the_cpus_by_more_than_half_a_core():
    assert was_loaded([2.0, 2.4, 2.2], cpus=2) is False
    assert was_loaded([3.9, 4.1, None], cpus=2) is True   # another 2-thread job shared the 2 cores
    assert was_loaded([None, None], cpus=2) is None and was_loaded([5.0], cpus=None) is None  # cannot be told


def test_the_machine_record_names_what_the_seconds_were_taken_on():
    info = machine_info()
    assert info["cpus"] == os.cpu_count() and info["threads"] >= 1 and info["device"]
    load = load_average()
    assert load is None or load >= 0


def test_the_machine_record_names_the_cpu_and_its_bf16_flags(monkeypatch, tmp_path):
    import builtins

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
                       "flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\nprocessor\t: 1\n")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(
        cpuinfo if str(path) == "/proc/cpuinfo" else path, *a, **k))
    info = machine_info()
    assert info["cpu_model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["cpu_bf16"] == ["amx_bf16", "avx512_bf16"]
