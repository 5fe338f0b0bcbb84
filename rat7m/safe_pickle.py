"""Read a pickled annotation table without letting the file run code.

The mini-RAT7M table is distributed as a pickle, and the dataset documentation opens it with
``np.load(path, allow_pickle=True)``. A pickle is a small program: its ``GLOBAL`` opcodes import
any callable (``os.system``, ``subprocess.Popen``, ``builtins.eval``) and ``REDUCE`` calls it, so
opening an untrusted pickle that way runs whatever it carries. Here every global a pickle names
goes through an allow-list holding only what numpy needs to rebuild arrays, dtypes and scalars;
dicts, lists, strings, numbers, booleans and ``None`` are pickle opcodes and need no global.
Anything else is refused, naming the global, before it is imported or called.

An allow-list of globals is not enough on its own: numpy trusts what it is handed. Called
directly, ``numpy.ndarray(shape, object_dtype, buffer)`` makes an object array whose pointers are
the pickle's bytes, and ``dtype.__setstate__`` (the BUILD opcode) accepts a forged state, e.g. an
object field with flags saying "no objects". Either crashes the process, or worse. So the pickle
gets a token for ``ndarray`` that only ``_reconstruct`` accepts, and BUILD is allowed only on a
fresh, empty array and on a dtype restating itself (what numpy's own pickles do). Checking BUILD
needs the pure-Python unpickler; tables have few opcodes (an array is one byte string), so an
official-size table still loads in well under a second.

Both on-disk forms users meet are read: a plain pickle (what ``pickle.dump`` and our
``save_annotation`` write, and what ``np.load`` falls back to for a non-``.npy`` file), and a
``.npy`` file holding a 0-d object array (what ``np.save(path, table_dict)`` writes); the pickle
inside the ``.npy`` goes through the same allow-list.
"""

from __future__ import annotations

import codecs
import io
import math
import os
import pickle
import reprlib
import struct
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rat7m.errors import BadInputError, UnsafePickleError
from rat7m.fileio import open_input, read_input

__all__ = [
    "ALLOWED_GLOBALS",
    "MAX_KEY_DEPTH",
    "MAX_KEY_SIZE",
    "MAX_TABLE_BYTES",
    "NPY_MAGIC",
    "UnsafePickleError",
    "safe_load",
    "safe_loads",
]

#: First bytes of a ``.npy`` file (see ``numpy.lib.format``).
NPY_MAGIC = b"\x93NUMPY"
#: Largest table file read (the official mini-RAT7M pickle is a few hundred MB).
MAX_TABLE_BYTES = 8 << 30


#: What an error message shows of a value from a pickle: a few levels and items (a pickle can share one list a
#: thousand ways, and a full repr of it grows exponentially with the pickle).
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxtuple, _SHOWN.maxdict, _SHOWN.maxset = 3, 6, 6, 4, 4
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 60, 60, 40


def _shown(value: Any) -> str:
    return _SHOWN.repr(value)


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol-2 pickles store ``bytes`` as latin-1 text."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {_shown(encoding)} (only latin1 is used)")
    return text.encode("latin1", errors)


def _numpy_reconstructors() -> dict[str, Any]:
    """The callables numpy's own ``__reduce__`` names, taken from numpy itself.

    Asking numpy (rather than importing ``numpy.core`` or ``numpy._core``) gives the right
    objects under numpy 1.x and 2.x alike, without the deprecation warning of ``numpy.core``.
    """
    array = np.zeros(1)
    found = {
        "_reconstruct": array.__reduce__()[0],
        "scalar": np.float64(0).__reduce__()[0],
    }
    if pickle.HIGHEST_PROTOCOL >= 5:
        found["_frombuffer"] = array.__reduce_ex__(5)[0]
    return found


class _NdarrayType:
    """What a pickle gets for ``numpy.ndarray``: a token only :func:`_reconstruct` accepts.

    numpy pickles name ``ndarray`` only as the first argument of ``_reconstruct``. Handing out the
    real class would let a pickle *call* it, and ``ndarray(shape, object_dtype, buffer=bytes)``
    makes an object array whose "pointers" are the pickle's bytes (a crash at best).
    """

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise UnsafePickleError("refusing to call numpy.ndarray directly (numpy's pickles never do)")

    def __repr__(self) -> str:
        return "numpy.ndarray (as a _reconstruct argument only)"


_NDARRAY = _NdarrayType()


def _make_reconstruct(real: Any) -> Any:
    def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not _NDARRAY:
            raise UnsafePickleError(f"refusing _reconstruct of {_shown(subtype)}: only numpy.ndarray is allowed")
        # numpy's own pickles always start from an empty (0,) array and give the real shape in
        # BUILD, with the data; any other shape would allocate what the file never holds
        if type(shape) is not tuple or shape != (0,) or not isinstance(dtype, (bytes, str)) or len(dtype) > 8:
            raise UnsafePickleError(f"refusing _reconstruct with shape {_shown(shape)} (numpy's pickles use (0,))")
        return real(np.ndarray, shape, dtype)

    return _reconstruct


def _plain_dtype(dtype: Any, what: str) -> np.dtype:
    """``dtype`` if it is a plain numpy dtype (no fields, no sub-array, object only as 'O')."""
    if not isinstance(dtype, np.dtype) or dtype.fields is not None or dtype.subdtype is not None:
        raise UnsafePickleError(f"refusing {what} with dtype {_shown(dtype)}: only plain dtypes are allowed")
    if (dtype.hasobject and dtype.kind != "O") or dtype.metadata is not None:
        raise UnsafePickleError(f"refusing {what} with dtype {_shown(dtype)}")
    return dtype


def _shape(shape: Any, what: str) -> tuple[int, ...]:
    if type(shape) is not tuple or len(shape) > 32 or not all(type(d) is int and 0 <= d < 2**62 for d in shape):
        raise UnsafePickleError(f"refusing {what} with shape {_shown(shape)}")
    return shape


def _check_array_state(state: Any) -> None:
    """Allow ``ndarray.__setstate__(state)`` only when the data present matches shape and dtype.

    numpy trusts the state: an object array of shape (1000,) set from a list of 0 items reads
    past the list's end (a segfault). So: ``(version, shape, dtype, fortran, data)`` with ``data``
    a list of exactly ``prod(shape)`` items for an object array, else bytes of exactly
    ``prod(shape) * itemsize``.
    """
    if type(state) is not tuple or len(state) != 5:
        raise UnsafePickleError("refusing an array state that is not numpy's (version, shape, dtype, order, data)")
    _, shape, dtype, fortran, data = state
    shape = _shape(shape, "an array")
    dtype = _plain_dtype(dtype, "an array")
    count = math.prod(shape)
    if type(fortran) is not bool:
        raise UnsafePickleError(f"refusing an array state with order flag {_shown(fortran)}")
    if dtype.kind == "O":
        if type(data) is not list or len(data) != count:
            found = f"{len(data)} items" if type(data) is list else type(data).__name__
            raise UnsafePickleError(f"refusing an object array of shape {shape} holding {found}")
    elif type(data) not in (bytes, bytearray) or len(data) != count * dtype.itemsize:
        found = f"{len(data)} bytes" if type(data) in (bytes, bytearray) else type(data).__name__
        raise UnsafePickleError(f"refusing a {dtype} array of shape {shape} ({count * dtype.itemsize} bytes) "
                                f"from {found}")  # fmt: skip


def _make_scalar(real: Any) -> Any:
    def scalar(dtype: Any, *args: Any) -> Any:
        dtype = _plain_dtype(dtype, "a scalar")
        if dtype.kind == "O":
            raise UnsafePickleError("refusing an object scalar (numpy's pickles never hold one)")
        if len(args) != 1 or type(args[0]) is not bytes or len(args[0]) != dtype.itemsize:
            raise UnsafePickleError(f"refusing a {dtype} scalar not made of exactly {dtype.itemsize} bytes")
        return real(dtype, args[0])

    return scalar


def _make_frombuffer(real: Any) -> Any:
    def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any, *axis_order: Any) -> np.ndarray:
        dtype = _plain_dtype(dtype, "_frombuffer")
        shape = _shape(shape, "_frombuffer")
        size = len(memoryview(buf).cast("B")) if isinstance(buf, (bytes, bytearray, pickle.PickleBuffer)) else -1
        if dtype.hasobject or size != math.prod(shape) * dtype.itemsize or order not in ("C", "F", "K", "A"):
            raise UnsafePickleError(f"refusing _frombuffer of a {dtype} array of shape {shape} from {size} bytes")
        # numpy 2.x adds the axis order of a non-contiguous array: a permutation of the axes, or None
        if axis_order and not (len(axis_order) == 1 and (axis_order[0] is None or (
                type(axis_order[0]) is tuple and sorted(axis_order[0]) == list(range(len(shape)))))):  # fmt: skip
            raise UnsafePickleError(f"refusing _frombuffer with axis order {_shown(axis_order)}")
        return real(buf, dtype, shape, order, *axis_order)

    return _frombuffer


def _dict_of_dict(*args: Any) -> dict:
    """``dict`` for a pickle: only ``dict()`` or ``dict(a_dict)`` (what a Table reduces to).

    ``dict(pairs)`` hashes each pair's key, which no depth check saw: a 347-byte pickle of keys nested 80 deep
    never returned, a 1 MB one overflowed the C stack.
    """
    if len(args) > 1 or (args and type(args[0]) is not dict):
        raise UnsafePickleError("refusing dict() of anything but a dict (keys it would hash unchecked)")
    return dict(*args)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """Every (module, name) a table pickle may name, for numpy 1.x and 2.x writers."""
    numpy_callables = _numpy_reconstructors()
    reconstruct = _make_reconstruct(numpy_callables["_reconstruct"])
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        # a rat7m.model.Table pickles as dict(<the plain dict>): building a dict from a dict runs no code
        ("builtins", "dict"): _dict_of_dict,
    }
    # numpy 1.x pickles say numpy.core.*, numpy 2.x pickles say numpy._core.*
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = _make_scalar(numpy_callables["scalar"])
        if "_frombuffer" in numpy_callables:
            allowed[(f"{core}.numeric", "_frombuffer")] = _make_frombuffer(numpy_callables["_frombuffer"])
    return allowed


#: The pure-Python unpickler; typed ``Any`` since typeshed declares none of the internals used here
#: (``stack``, the ``load_*`` opcode methods).
_PyUnpickler: Any = pickle._Unpickler

#: The allow-list: (module, name) -> the object handed to the unpickler.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = _allowed_globals()
#: The allowed callables that rebuild numpy objects from bytes and small tuples (they refuse anything else).
_RECONSTRUCTORS = frozenset(
    value for (module, name), value in ALLOWED_GLOBALS.items() if module.startswith("numpy.") or module == "_codecs"
)


def _check_dtype_state(dtype: np.dtype, state: Any) -> None:
    """Allow ``dtype.__setstate__(state)`` only when it restates what ``dtype`` already is.

    ``dtype.__setstate__`` trusts its argument: a forged state can give a dtype object fields,
    or flags saying it holds no objects, over memory that does (a crash, or worse). A genuine
    plain dtype's state is the one it would pickle itself, up to byte order; structured and
    sub-array dtypes, which a table never holds, are refused.
    """
    if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">") and state[1] != dtype.byteorder:
        if np.dtype(dtype.str) is dtype:
            raise UnsafePickleError(f"refusing to change the byte order of numpy's shared {dtype} dtype")
        own = dtype.newbyteorder(state[1]).__reduce__()[2]
    else:
        own = dtype.__reduce__()[2]
    if state != own:
        raise UnsafePickleError(f"refusing dtype state {_shown(state)} for {dtype}: only plain dtypes are allowed")


def _load_build(self: _SafeUnpickler) -> None:
    """BUILD (``obj.__setstate__(state)``), allowed only where numpy's own pickles use it.

    That is a fresh ``ndarray`` from ``_reconstruct`` (empty until BUILD fills it; numpy checks
    the data against shape and dtype) and a dtype restating itself. Anything else, e.g. setting
    attributes on one of the allowed functions, is refused.
    """
    state, inst = self.stack[-1], self.stack[-2]
    if not (type(state) is tuple and len(state) == 5 and type(state[4]) is bytes):  # plain data: nothing to walk
        _check_expanded(self, state)
    if isinstance(inst, np.dtype):
        _check_dtype_state(inst, state)
    elif type(inst) is not np.ndarray or inst.shape != (0,) or id(inst) in self._built:
        raise UnsafePickleError(f"refusing to set the state of {type(inst).__name__} (not a fresh numpy array)")
    else:
        _check_array_state(state)
        self._built.add(id(inst))
        self._keep.append(inst)
    _PyUnpickler.load_build(self)


#: Deepest nesting of tuples and frozensets accepted in a dict key or set item. Hashing a deeper
#: one recurses in C without a guard (a tuple nested 10^6 deep crashes the process).
MAX_KEY_DEPTH = 64
#: Most tuples and frozensets a dict key or set item may hold, counting a shared sub-tuple once per
#: place it appears: a tuple's hash is not cached, so hashing walks every path, and 60 levels of
#: ``t = (t, t)`` (a few hundred bytes of pickle) would take 2^60 steps. A table's keys hold none.
MAX_KEY_SIZE = 100_000


def _check_depth(self: _SafeUnpickler, value: Any) -> None:
    """Refuse a hashable value nested deeper than :data:`MAX_KEY_DEPTH`, or larger than
    :data:`MAX_KEY_SIZE` as hashing would walk it, before anything hashes it.

    Depths and sizes are computed once per object (post-order, cached by id), so shared sub-tuples
    are not walked again and the walk stops as soon as a path is too deep.
    """
    nested = (tuple, frozenset)
    if type(value) not in nested or id(value) in self._depths:
        return
    stack: list[tuple[Any, bool, int]] = [(value, False, 1)]
    while stack:
        item, children_done, depth = stack.pop()
        if id(item) in self._depths:
            continue
        if children_done:
            children = [id(c) for c in item if type(c) in nested]
            self._depths[id(item)] = 1 + max((self._depths[c] for c in children), default=0)
            size = self._sizes[id(item)] = 1 + sum(self._sizes[c] for c in children)
            if size > MAX_KEY_SIZE:
                raise UnsafePickleError(
                    f"refusing a dict key or set item made of more than {MAX_KEY_SIZE} nested tuples or frozensets"
                )
            self._keep.append(item)
            continue
        if depth > MAX_KEY_DEPTH:
            raise UnsafePickleError(f"refusing a dict key or set item nested more than {MAX_KEY_DEPTH} deep")
        stack.append((item, True, depth))
        stack.extend((c, False, depth + 1) for c in item if type(c) in nested and id(c) not in self._depths)
    if self._depths[id(value)] > MAX_KEY_DEPTH:
        raise UnsafePickleError(f"refusing a dict key or set item nested more than {MAX_KEY_DEPTH} deep")


def _load_bytearray8(self: _SafeUnpickler) -> None:
    """BYTEARRAY8 (protocol 5, numpy's in-band arrays) refusing a length beyond the pickle's own size.

    The pure-Python unpickler allocates (and zero-fills) the stated length before reading a byte: a
    20-byte file stating 1.5 GB took 1.5 GB.
    """
    (length,) = struct.unpack("<Q", self.read(8))
    if self.source_bytes is not None and length > self.source_bytes:
        raise pickle.UnpicklingError(f"a bytearray of {length} bytes stated in a pickle of {self.source_bytes}")
    data = bytearray(length)
    self.readinto(data)
    self.append(data)


#: The most dict keys and set items that are not strings or bytes a pickle may hash (a table has a few dozen):
#: integers hash to known values, so 20000 colliding keys took 4 s, growing with the square of their number.
MAX_OTHER_KEYS = 4096
#: The most containers (lists, dicts, sets, tuples) a pickle may build, at least: and one per 4 of its bytes
#: (2 MB of EMPTY_SET opcodes built 494 MB of sets; a list of (i, 1) pairs takes ~8 bytes a pair).
MIN_CONTAINERS = 10_000
#: The most items any value handed to a callable (or BUILD, or returned) may expand to, shared parts counted each
#: time they are reached: a 427-byte pickle of a list shared 24 levels deep is 2**24 items to numpy or a repr.
MAX_EXPANDED = 100_000


def _distinct_hash(key: Any) -> bool:
    """Integers below 2**61 - 1 hash to themselves: distinct keys, no collisions to count."""
    return isinstance(key, int | np.integer) and not isinstance(key, bool | np.bool_) and abs(int(key)) < (1 << 61) - 1


def _hashing(op: Any, items_of: Any, keys_of: Any = None) -> Any:
    """Wrap an opcode that hashes stack items so their depth is checked first, and keys other than text counted."""

    def load(self: _SafeUnpickler) -> None:
        for item in items_of(self):
            _check_depth(self, item)
        for key in (keys_of or items_of)(self):
            if type(key) not in (str, bytes) and not _distinct_hash(key):
                self._other_keys += 1
                if self._other_keys > MAX_OTHER_KEYS:
                    raise UnsafePickleError(f"refusing over {MAX_OTHER_KEYS} dict keys or set items that are not text")
        op(self)

    return load


def _counting(op: Any) -> Any:
    """Wrap an opcode that builds a container so the pickle's containers are counted."""

    def load(self: _SafeUnpickler) -> None:
        self._containers += 1
        if self._containers > max(MIN_CONTAINERS, (self.source_bytes or 0) // 4):
            raise UnsafePickleError("refusing a pickle that builds more containers than its size allows")
        op(self)

    return load


def _check_expanded(self: _SafeUnpickler, value: Any, limit: int | None = None) -> None:
    """Refuse ``value`` if it expands to more than ``limit`` items (shared parts counted each time they are reached).

    ``limit`` is :data:`MAX_EXPANDED` and one item per byte of the pickle (an item not shared costs a byte or
    more: the bound is linear in the pickle, what sharing multiplies is not). Each container is walked once
    (post-order, sizes kept; a cycle's back edge counts 1), object arrays included (a value can hide behind
    one); a container added to after its check drops the sizes kept (see :func:`_added_to`), and all the
    walking together is bounded by the pickle's size.
    """
    limit = MAX_EXPANDED + (self.source_bytes or 0) if limit is None else limit
    sizes, opened = self._expanded, self._opened
    stack: list[tuple[Any, list | None, int]] = [(value, None, 0)]
    while stack:
        item, nested, count = stack.pop()
        if nested is None:  # first visit
            if id(item) in sizes or id(item) in opened or not _is_container(item):
                continue
            children = _children(item)
            self._walked += 1 + len(children)
            if self._walked > MIN_CONTAINERS * 10 + 4 * (self.source_bytes or 0):
                raise UnsafePickleError("refusing a pickle whose values take too long to check (shared many ways)")
            inner = [c for c in children if _is_container(c)]
            opened.add(id(item))
            stack.append((item, inner, len(children)))
            stack.extend((c, None, 0) for c in inner if id(c) not in sizes and id(c) not in opened)
            continue
        opened.discard(id(item))
        size = sizes[id(item)] = 1 + count - len(nested) + sum(sizes.get(id(c), 1) for c in nested)
        self._keep.append(item)  # alive, so its id stays its own
        if size > limit:
            raise UnsafePickleError(f"refusing a value that expands to over {limit} items (parts shared many ways): "
                                    "numpy, a message or the caller would walk each")  # fmt: skip
    if _is_container(value) and sizes.get(id(value), 0) > limit:
        raise UnsafePickleError(f"refusing a value that expands to over {limit} items (parts shared many ways)")


def _is_container(value: Any) -> bool:
    return type(value) in (list, tuple, dict, set, frozenset) or (type(value) is np.ndarray and value.dtype == object)


def _children(item: Any) -> list:
    if type(item) is dict:
        return [c for pair in item.items() for c in pair]
    return list(item.ravel()) if type(item) is np.ndarray else list(item)


def _added_to(op: Any, target_of: Any) -> Any:
    """Wrap an opcode that adds to a list, dict or set: one already checked drops every size kept (they may grow)."""

    def load(self: _SafeUnpickler) -> None:
        if id(target_of(self)) in self._expanded:  # a cycle pickle.dump writes (a dict under an object array in it)
            self._expanded.clear()  # re-walked at the next check, within the walking bound
        op(self)

    return load


def _checked(op: Any) -> Any:
    """Wrap REDUCE, NEWOBJ(_EX): the arguments a callable gets are bounded first."""

    def load(self: _SafeUnpickler) -> None:
        if self.stack[-2] not in _RECONSTRUCTORS:  # numpy's own take no container (their wrappers refuse one)
            _check_expanded(self, self.stack[-2:])  # the arguments (and NEWOBJ_EX's keywords)
        op(self)

    return load


class _SafeUnpickler(_PyUnpickler):
    """Unpickler whose only source of callables is :data:`ALLOWED_GLOBALS`.

    It is the pure-Python unpickler, because only there can BUILD be checked (see
    :func:`_load_build`); a table has few opcodes (arrays are single byte strings), so it is fast.
    """

    dispatch: ClassVar[dict] = dict(_PyUnpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8
    # every opcode that hashes a value from the pickle: check its nesting depth first
    dispatch[pickle.SETITEM[0]] = _hashing(_PyUnpickler.load_setitem, lambda self: [self.stack[-2]])
    dispatch[pickle.SETITEMS[0]] = _hashing(_PyUnpickler.load_setitems, lambda self: self.stack[::2])
    dispatch[pickle.DICT[0]] = _hashing(_PyUnpickler.load_dict, lambda self: self.stack[::2])
    dispatch[pickle.ADDITEMS[0]] = _hashing(_PyUnpickler.load_additems, lambda self: self.stack)
    dispatch[pickle.FROZENSET[0]] = _hashing(_PyUnpickler.load_frozenset, lambda self: self.stack)
    # every opcode that hands a value to a callable: bound what it expands to first
    for _op in (pickle.REDUCE, pickle.NEWOBJ, pickle.NEWOBJ_EX):
        dispatch[_op[0]] = _checked(_PyUnpickler.dispatch[_op[0]])
    # every opcode that adds to a container: not to one already checked (below MARK, the target is the stack's top)
    dispatch[pickle.APPEND[0]] = _added_to(_PyUnpickler.load_append, lambda self: self.stack[-2])
    dispatch[pickle.SETITEM[0]] = _added_to(dispatch[pickle.SETITEM[0]], lambda self: self.stack[-3])
    for _op in (pickle.APPENDS, pickle.SETITEMS, pickle.ADDITEMS):
        dispatch[_op[0]] = _added_to(dispatch[_op[0]], lambda self: self.metastack[-1][-1])
    # every opcode that builds a container (the empty tuple is one shared object): count them
    for _op in (pickle.EMPTY_LIST, pickle.EMPTY_DICT, pickle.EMPTY_SET, pickle.LIST, pickle.DICT, pickle.TUPLE,
                pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.FROZENSET):  # fmt: skip
        dispatch[_op[0]] = _counting(dispatch[_op[0]])
    del _op
    #: The pickle's size: no object it states may be larger (see :func:`_load_bytearray8`).
    source_bytes: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._built: set[int] = set()
        self._depths: dict[int, int] = {}
        self._sizes: dict[int, int] = {}
        self._keep: list[Any] = []  # keeps checked objects alive, so their ids stay theirs
        self._other_keys = self._containers = self._walked = 0
        self._expanded: dict[int, int] = {}  # id -> expanded size of each container checked
        self._opened: set[int] = set()  # containers being walked (a cycle's back edge)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            msg = (
                f"refusing to load: the pickle names the global '{module}.{name}', which an annotation table "
                f"never contains (only numpy arrays, dtypes and scalars are allowed); it may be trying to run code"
            )
            raise UnsafePickleError(msg) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing persistent id: a table has none")


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with the allow-list.

    Args:
        data: the pickle's bytes.
        source: name used in error messages (usually the file path).

    Returns:
        The unpickled object.

    Raises:
        UnsafePickleError: the pickle names a global outside the allow-list; nothing was run.
        BadInputError: the bytes are not a complete, well-formed pickle (truncated or corrupt).
    """
    return _unpickle(io.BytesIO(data), len(data), source)


#: Reads up to this size go to the file as asked (a short read at the end is the truncation the unpickler reports).
_SMALL_READ = 1 << 16


class _Bounded:
    """A file's ``read``/``readline``/``readinto`` that never ask for more than the ``size`` bytes it has.

    A pickle states each array's byte count itself: read straight from a file, a forged count of
    many gigabytes would have the reader allocate that much before finding the file shorter.
    """

    def __init__(self, handle: Any, size: int) -> None:
        self._handle, self._size = handle, size

    def _left(self, n: int | None) -> int:
        left = max(0, self._size - self._handle.tell())
        return left if n is None or n < 0 else min(n, left)

    def read(self, n: int = -1) -> bytes:
        if 0 <= n <= _SMALL_READ:  # an opcode or its argument: nothing to bound (and pickles of protocol 3
            return self._handle.read(n)  # and before read every opcode alone: this is their hot path)
        return self._handle.read(self._left(n))

    def readline(self, limit: int = -1) -> bytes:
        return self._handle.readline(self._left(limit))

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        return self._handle.readinto(view[: self._left(len(view))])

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, offset: int) -> int:
        return self._handle.seek(offset)


def _unpickle(stream: Any, size: int, source: str) -> Any:
    """Unpickle from ``stream`` (``size`` bytes, a BytesIO or a :class:`_Bounded` file) with the allow-list."""
    try:
        unpickler = _SafeUnpickler(stream)
        unpickler.source_bytes = size
        loaded = unpickler.load()
        _check_expanded(unpickler, loaded)  # what the caller gets: bounded by its size
        return loaded
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{source}: {exc}") from None
    except OSError as exc:
        raise BadInputError(f"{source} cannot be read ({exc.strerror or exc})") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            LookupError, OverflowError, MemoryError, RecursionError, struct.error) as exc:  # fmt: skip
        position = stream.tell()
        if position >= size:  # ran out of bytes before the STOP opcode
            msg = f"{source}: the pickle ends early ({size} bytes): the file is truncated; download it again"
        elif isinstance(exc, KeyError):  # the pure-Python unpickler's word for an unknown opcode
            stream.seek(position - 1)
            msg = f"{source}: not a readable pickle (unknown opcode {stream.read(1)!r})"
        else:
            msg = f"{source}: not a readable pickle ({type(exc).__name__}: {exc})"
        raise BadInputError(msg) from None


def _load_npy_object(data: bytes, source: str) -> Any:
    """Read a ``.npy`` file holding a pickled object array, unpickling it with the allow-list."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        # read_array_header_* parse the header with ast.literal_eval: no code runs
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    except ValueError as exc:
        raise BadInputError(f"{source}: unreadable .npy header ({exc})") from None
    if not dtype.hasobject:
        msg = f"{source}: the .npy file holds a plain {dtype} array of shape {shape}, not a pickled table dict"
        raise BadInputError(msg)
    array = safe_loads(data[stream.tell() :], source)
    if not isinstance(array, np.ndarray):
        raise BadInputError(f"{source}: the .npy payload is a {type(array).__name__}, expected an object array")
    return array.item() if array.shape == () else array


def safe_load(path: str | os.PathLike[str]) -> Any:
    """Load a pickle or a pickle-bearing ``.npy`` file without running code.

    Args:
        path: a plain pickle, or a ``.npy`` file holding an object array (``np.save`` of a dict).
            A 0-d object array is unwrapped (``.item()``), as ``np.load(...).item()`` would.

    Returns:
        The unpickled object.

    Raises:
        BadInputError: the file is missing, unreadable, truncated, corrupt, or names a global
            outside the allow-list (:class:`UnsafePickleError`).
    """
    path = Path(path)
    # a FIFO or /dev/zero: one line, not a hang; a plain pickle is unpickled straight from the file (a copy
    # of the whole file in memory first cost its size again, and ~25 ms for the test split's table)
    changed = f"table {path} changed size while it was read; read it again when it is complete"
    with open_input(path, "table", max_bytes=MAX_TABLE_BYTES) as handle:
        try:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise BadInputError(f"{path}: the file is empty")
            is_npy = handle.read(len(NPY_MAGIC)) == NPY_MAGIC
            if not is_npy:
                handle.seek(0)
                try:
                    loaded = _unpickle(_Bounded(handle, size), size, str(path))
                except BadInputError:
                    if os.fstat(handle.fileno()).st_size != size:  # cut short by a writer, not corrupt
                        raise BadInputError(changed) from None
                    raise
                if os.fstat(handle.fileno()).st_size != size:
                    raise BadInputError(changed)
                return loaded
        except OSError as exc:
            raise BadInputError(f"table {path} cannot be read ({exc.strerror or exc})") from None
    return _load_npy_object(read_input(path, "table", max_bytes=MAX_TABLE_BYTES), str(path))
