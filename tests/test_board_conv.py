"""The board core with a conv net on the conv engine, spoken to over the UART (tests/test_board_top.py's commands).

The same command sequence and checks as the fc variants of tests/test_board_top.py
(ping, power-up state, LOAD semantics, INFER against the golden model, two
pipelined INFERs, an unknown command), on the ``bram`` core built for a small
conv net: a file of its own so the parallel test workers build it beside them.
"""

from __future__ import annotations

import pytest

from tests.test_board_top import (  # the shared checks, collected here with this file's board_run
    run_board,
    test_infer_matches_golden,
    test_load_semantics,
    test_ping_and_power_up_state,
    test_pipelined_infers,
    test_unknown_command,
)

pytestmark = pytest.mark.rtl

__all__ = ["test_infer_matches_golden", "test_load_semantics", "test_ping_and_power_up_state",
           "test_pipelined_infers", "test_unknown_command"]


@pytest.fixture(scope="module")
def board_run(tmp_path_factory):
    return run_board("conv", tmp_path_factory)
