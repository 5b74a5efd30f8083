"""The stack helpers' port draws: every port a stack is given is distinct from every other stack's.

Stacks draw their ports when built and bind them only when started, so the draws themselves must
not repeat: a MultiHost of five stacks once drew one port twice and its second collector failed
with "address already in use".
"""

from __future__ import annotations

from tests.stack import PORT_RANGE, free_ports


def test_no_port_is_handed_out_twice_across_draws():
    # 40 stacks' worth: 480 ports from 12,768 drawn independently would repeat almost surely.
    drawn = [port for _ in range(40) for port in free_ports(12)]
    assert len(drawn) == len(set(drawn)) == 480
    assert all(PORT_RANGE[0] <= port <= PORT_RANGE[1] for port in drawn)
