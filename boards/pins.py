"""Board pins of the tops: the UART and the status LEDs through Amaranth 0.5 I/O buffers.

Both tops request their resources with ``dir="-"`` and instantiate
``amaranth.lib.io.Buffer`` components, the Amaranth 0.5 way (a plain
``platform.request`` with platform-made buffers is deprecated). The buffers
carry the resources' attributes (pull-ups, I/O standards) and inversion.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth import Module, Value
from amaranth.lib import io


def connect_uart_and_leds(m: Module, platform, rx: Value, tx: Value, leds: Sequence[Value]) -> None:
    """Drive ``rx`` from UART 0's RX pin, UART 0's TX pin from ``tx``, and LED i from ``leds[i]``."""
    uart = platform.request("uart", 0, dir="-")
    m.submodules.uart_rx = rx_buf = io.Buffer("i", uart.rx)
    m.submodules.uart_tx = tx_buf = io.Buffer("o", uart.tx)
    m.d.comb += [rx.eq(rx_buf.i), tx_buf.o.eq(tx)]
    for i, sig in enumerate(leds):
        m.submodules[f"led{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
        m.d.comb += led.o.eq(sig)
