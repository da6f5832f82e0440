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
