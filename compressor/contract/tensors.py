"""The ``.dcz`` version 2 sections that are not Huffman-coded: dense tensors and the program.

Everything of a model that the compressor does not prune and quantize (BatchNorm
statistics, LayerNorm, biases of recurrent layers, root parameters, layers the
user keeps dense) is stored here by its state-dict name, exactly, in its own
dtype, so ``apply_to`` restores any model and the bytes count in the ratio.
Each tensor's bytes are explicit in the file, so the reader checks them against
the bytes left before it allocates anything.
"""

from __future__ import annotations

import numpy as np

from .binfmt import Reader, Writer

# dtype codes; bfloat16 is stored as float32 by the torch side (exact: bf16 is a subset)
DTYPES: dict[int, str] = {0: "<f4", 1: "<f2", 2: "<f8", 3: "<i8", 4: "<i4", 5: "<i2", 6: "|i1",
                          7: "|u1", 8: "|b1"}
CODES = {np.dtype(v): k for k, v in DTYPES.items()}
MAX_NDIM = 8
PROGRAM_KINDS = {0: "none", 1: "torch.export archive, xz-compressed"}


def dtype_code(a: np.ndarray) -> int:
    """The file's code for ``a``'s dtype; anything else is the caller's bug (checked at start)."""
    try:
        return CODES[np.dtype(a.dtype).newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype]
    except KeyError:
        raise ValueError(f"dtype {a.dtype} cannot be stored") from None


def write_dense(out: Writer, dense: dict[str, np.ndarray]) -> None:
    out.varint(len(dense))
    for name, a in dense.items():
        a = np.asarray(a)
        code = dtype_code(a)
        out.text(name)
        out.u8(code)
        out.u8(a.ndim)
        for d in a.shape:
            out.varint(d)
        out.raw(np.ascontiguousarray(a, dtype=DTYPES[code]).tobytes())


def read_dense(r: Reader) -> dict[str, np.ndarray]:
    """Dense tensors by name; names are unique, each tensor's bytes are in the file."""
    n = r.varint(limit=len(r.data))  # a record is at least 3 bytes
    out: dict[str, np.ndarray] = {}
    for _ in range(n):
        name = r.text()
        if name in out:
            r.fail(f"tensor {name}: stored twice")
        code, ndim = r.u8(), r.u8()
        if code not in DTYPES:
            r.fail(f"tensor {name}: unknown dtype code {code}")
        if ndim > MAX_NDIM:
            r.fail(f"tensor {name}: {ndim} dimensions (at most {MAX_NDIM})")
        shape = tuple(r.varint(limit=len(r.data)) for _ in range(ndim))
        dt = np.dtype(DTYPES[code])
        size = int(np.prod(shape, dtype=np.float64)) * dt.itemsize
        if size > len(r.data) - r.pos:
            r.fail(f"tensor {name}: shape {shape} needs {size} bytes, {len(r.data) - r.pos} are left")
        raw = np.frombuffer(r.take(size), dtype="|u1" if dt == np.bool_ else dt)
        if dt == np.bool_:
            if raw.size and raw.max() > 1:
                r.fail(f"tensor {name}: bool values other than 0 and 1")
            raw = raw.view(np.bool_)
        out[name] = raw.reshape(shape).copy()
    return out


def write_program(out: Writer, program: tuple[int, bytes] | None) -> None:
    kind, data = program if program else (0, b"")
    out.u8(kind)
    out.varint(len(data))
    out.raw(data)


def read_program(r: Reader) -> tuple[int, bytes] | None:
    """The embedded architecture, opaque to the contract (the torch side interprets it)."""
    kind = r.u8()
    if kind not in PROGRAM_KINDS:
        r.fail(f"unknown program kind {kind}")
    data = bytes(r.take(r.varint(limit=len(r.data))))
    if kind == 0:
        if data:
            r.fail("program bytes without a program kind")
        return None
    return kind, data
