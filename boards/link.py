"""The host link's speed: the default baud rate and the divisor check every board build makes.

Why 3 Mbaud by default: both boards' USB-UART bridges make it exactly from
their own clocks (the iCEBreaker's FT2232H: 3 MHz = its 12 MHz baud clock / 4,
and far faster; the ULX3S's FT231X: 3 Mbaud is its maximum, its 48 MHz / 16),
and at 3 Mbaud a 784-byte MNIST image takes 2.6 ms instead of 68 ms at
115,200 baud. The FPGA side makes the rate as ``clock / divisor`` with an
integer divisor, so the rate it really runs at differs from the host's by
up to half a divisor step: at 24 MHz (iCEBreaker) the divisor is 8 and the
rate exact; at 50 MHz (ULX3S) it is 17, i.e. 2.94 Mbaud, 1.96 % slow. An 8N1
receiver sampling mid-bit tolerates a few per cent between the two ends over
the ten bits of a frame, so the build refuses a divisor that misses by more
than :data:`MAX_BAUD_ERROR`, and one below :data:`MIN_DIVISOR` (the receiver
finds a start edge to within one clock, a quarter bit at divisor 4).
"""

from __future__ import annotations

from compressor.contract.errors import DeepcompError

DEFAULT_BAUD = 3_000_000
MAX_BAUD_ERROR = 0.02
MIN_DIVISOR = 8


def uart_divisor(board: str, clock_hz: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clock_hz``, or one clear error if the rate is off."""
    if baud <= 0:
        raise DeepcompError(f"{board}: --baud {baud}: must be positive")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise DeepcompError(f"{board}: --baud {baud} at {clock_hz / 1e6:g} MHz needs {clock_hz / baud:.2f} "
                            f"clock cycles per bit, fewer than {MIN_DIVISOR}: use at most "
                            f"{int(clock_hz // MIN_DIVISOR)} baud or a faster --freq")
    error = clock_hz / divisor / baud - 1
    if abs(error) > MAX_BAUD_ERROR:
        raise DeepcompError(f"{board}: --baud {baud} at {clock_hz / 1e6:g} MHz: the nearest divisor {divisor} "
                            f"makes {clock_hz / divisor:.0f} baud ({100 * error:+.1f} %), more than "
                            f"{100 * MAX_BAUD_ERROR:g} % off; pick a baud rate near clock / n")
    return divisor
