"""The object store: objects indexed by kind and namespace, a global resourceVersion counter,
owner and uid indexes, and a bounded change log that watches replay.

Stored objects are never mutated in place: every write stores a new dict (copy-on-write), so the
change log and in-flight responses can hold references safely.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

Key = tuple[str, str, str]  # (kind, namespace, name); namespace "" for cluster-scoped kinds
Obj = dict[str, Any]

LOG_SIZE = 50_000


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (obj["kind"], meta.get("namespace") or "", meta["name"])


class Store:
    def __init__(self, log_size: int = LOG_SIZE) -> None:
        self.rv = 0
        self._data: dict[str, dict[str, dict[str, Obj]]] = {}
        self._uids: dict[str, Key] = {}
        self._children: dict[str, dict[Key, None]] = {}
        self._owners: dict[Key, tuple[str, ...]] = {}
        self.log: deque[tuple[int, str, Obj]] = deque(maxlen=log_size)

    # ------------------------------------------------------------------ reads
    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self._data.get(kind, {}).get(namespace or "", {}).get(name)

    def by_uid(self, uid: str) -> Obj | None:
        key = self._uids.get(uid)
        return self.get(*key) if key else None

    def items(self, kind: str, namespace: str | None = None) -> Iterator[Obj]:
        """Objects of ``kind`` in namespace order then name order (etcd key order)."""
        spaces = self._data.get(kind, {})
        if namespace is not None:
            names = spaces.get(namespace, {})
            for name in sorted(names):
                yield names[name]
            return
        for ns in sorted(spaces):
            names = spaces[ns]
            for name in sorted(names):
                yield names[name]

    def unordered(self, kind: str) -> Iterator[Obj]:
        for names in self._data.get(kind, {}).values():
            yield from names.values()

    def count(self, kind: str, namespace: str | None = None) -> int:
        spaces = self._data.get(kind, {})
        if namespace is not None:
            return len(spaces.get(namespace, {}))
        return sum(len(v) for v in spaces.values())

    def namespaces_in_use(self) -> set[str]:
        used: set[str] = set()
        for kind, spaces in self._data.items():
            if kind in ("Namespace", "Node"):
                continue
            used.update(ns for ns, names in spaces.items() if names)
        return used

    def children(self, owner_uid: str, kind: str | None = None) -> list[Obj]:
        out: list[Obj] = []
        for key in self._children.get(owner_uid, {}):
            if kind is not None and key[0] != kind:
                continue
            obj = self.get(*key)
            if obj is not None:
                out.append(obj)
        return out

    # ------------------------------------------------------------------ writes
    def next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def put(self, obj: Obj) -> Obj:
        """Store ``obj`` (taking ownership) with a fresh resourceVersion."""
        key = key_of(obj)
        old = self.get(*key)
        obj["metadata"] = {**obj["metadata"], "resourceVersion": self.next_rv()}
        self._data.setdefault(key[0], {}).setdefault(key[1], {})[key[2]] = obj
        uid = obj["metadata"].get("uid")
        if old is not None and old["metadata"].get("uid") not in (None, uid):
            self._uids.pop(old["metadata"]["uid"], None)
        if uid:
            self._uids[uid] = key
        self._index_owners(key, obj)
        self.log.append((self.rv, "MODIFIED" if old is not None else "ADDED", obj))
        return obj

    def remove(self, kind: str, namespace: str, name: str) -> Obj | None:
        names = self._data.get(kind, {}).get(namespace or "", {})
        old = names.pop(name, None)
        if old is None:
            return None
        key = (kind, namespace or "", name)
        uid = old["metadata"].get("uid")
        if uid and self._uids.get(uid) == key:
            del self._uids[uid]
        for owner in self._owners.pop(key, ()):
            self._children.get(owner, {}).pop(key, None)
        self._children.pop(uid or "", None)
        gone = {**old, "metadata": {**old["metadata"], "resourceVersion": self.next_rv()}}
        self.log.append((self.rv, "DELETED", gone))
        return gone

    def _index_owners(self, key: Key, obj: Obj) -> None:
        refs = obj["metadata"].get("ownerReferences") or []
        uids = tuple(r.get("uid", "") for r in refs if isinstance(r, dict))
        previous = self._owners.get(key, ())
        if previous == uids:
            return
        for owner in previous:
            self._children.get(owner, {}).pop(key, None)
        if uids:
            self._owners[key] = uids
            for owner in uids:
                self._children.setdefault(owner, {})[key] = None
        else:
            self._owners.pop(key, None)

    def oldest_logged_rv(self) -> int:
        return self.log[0][0] if self.log else self.rv + 1
