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


def connect_flash(m: Module, platform, core) -> None:
    """The configuration SPI flash (``spi_flash_1x``) to ``core``'s ``flash_*`` ports.

    CS, WP and HOLD are active-low pins (the resource inverts them), so ``cs`` is
    driven active high and WP/HOLD are held inactive.
    """
    spi = platform.request("spi_flash_1x", 0, dir="-")
    for name, port, sig in (("cs", spi.cs, core.flash_cs), ("sck", spi.clk, core.flash_sck),
                            ("copi", spi.copi, core.flash_copi), ("wp", spi.wp, 0), ("hold", spi.hold, 0)):
        m.submodules[f"flash_{name}"] = buf = io.Buffer("o", port)
        m.d.comb += buf.o.eq(sig)
    m.submodules.flash_cipo = cipo = io.Buffer("i", spi.cipo)
    m.d.comb += core.flash_cipo.eq(cipo.i)
