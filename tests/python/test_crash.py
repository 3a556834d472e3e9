"""The crash test in CI: scripts/crash.sh with 3 cycles must pass, as it is and with small
segments whose files are reused.

Each cycle SIGKILLs the broker under confirmed persistent load and checks that
every confirmed message is back after the restart (see crash.py). It starts
brokers of its own, so it is skipped against SPATEMQ_TEST_URI.
"""

import os
import subprocess

import pytest

from conftest import REPO_ROOT

CYCLES = 3
# A cycle takes a few seconds (two broker starts, up to 2 s of load, a drain).
TIMEOUT_S = 240


@pytest.mark.timeout(TIMEOUT_S + 30)
def test_confirmed_messages_survive_sigkill():
    run_crash_test([])


@pytest.mark.timeout(TIMEOUT_S + 30)
def test_confirmed_messages_survive_sigkill_in_reused_segment_files():
    """Small segments and a consumer that acks everything: segments are filled, emptied and
    their files reused as new segments (old records still in them) while the broker is
    killed."""
    run_crash_test(["--segment-size", "256KiB", "--hold-every", "0"])


def run_crash_test(extra_args):
    if os.environ.get("SPATEMQ_TEST_URI"):
        pytest.skip("the crash test kills and restarts a broker of its own")
    binary = os.environ.get("SPATEMQ_BIN") or os.path.join(REPO_ROOT, "target", "release", "spatemq")
    result = subprocess.run(
        ["bash", os.path.join(REPO_ROOT, "scripts", "crash.sh"), "--cycles", str(CYCLES)] + extra_args,
        env=dict(os.environ, SPATEMQ_BIN=binary), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT_S)
    output = result.stdout.decode("utf-8", "replace")
    assert result.returncode == 0, "crash.sh failed (exit %d):\n%s" % (result.returncode, output)
    summary = [line for line in output.splitlines() if line.startswith("total over %d cycles" % CYCLES)]
    assert summary and " lost 0 " in summary[0], "no lossless total in:\n%s" % output
    assert "confirmed 0 " not in summary[0], "nothing was confirmed, nothing was tested:\n%s" % output
