# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Streaming both ways: checked lines into ``COPY ... FROM STDIN``, the target's rows back out.

* :class:`CopyReader` feeds ``copy_expert`` from a producer thread and spills ``md5<TAB>key``
  per row to a temporary file;
* :class:`TargetSink` receives ``COPY (SELECT ... ORDER BY key) TO STDOUT`` one row at a time
  and hands ``(key, md5)`` to a :class:`Comparison` (a merge of two key-ordered streams) or a
  :class:`MultisetComparison` (tables without a sortable key).

Nothing here holds more than a few chunks in memory.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import itertools
import operator
import threading

try:
    import queue
except ImportError:  # pragma: no cover - Python 2 is not supported, kept for the sanity import test
    import Queue as queue

from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_checks import key_function, qualified, quote_ident

CHUNK_BYTES = 1 << 20
QUEUE_CHUNKS = 4
# Example keys a Comparison keeps per kind of difference (its summary()).
DIFFERENCE_EXAMPLES = 5
# Target rows compared together (TargetSink.flush).
SINK_ROWS = 1000
_FIRST = operator.itemgetter(0)
_SECOND = operator.itemgetter(1)
_SPLIT_FIRST = operator.methodcaller('partition', b'\t')


def key_text_function(spec):
    """line -> the text of its key fields joined by tabs (fast path: key is the first column)."""
    idx = [spec.index_of(name) for name in spec.pk]
    if idx == [0]:
        def first(line):
            cut = line.find('\t')
            return line if cut < 0 else line[:cut]
        return first
    return lambda line: '\t'.join(line.split('\t')[i] for i in idx)


class CopyReader(object):
    """File-like object for ``copy_expert``: batches of checked lines in, COPY text chunks out.

    ``batches`` yields lists of lines (:meth:`TableChecker.batches`).  A producer thread runs
    the row checks and builds chunks of about :data:`CHUNK_BYTES` while the connection sends
    the previous chunk (psycopg2 releases the GIL while it writes), so checking and
    PostgreSQL's COPY work overlap.  At most :data:`QUEUE_CHUNKS` chunks wait in memory.  For
    each line the producer writes ``md5<TAB>key`` to ``spill`` so validation can stream the
    checksums back in key order.  Once a fatal problem is found it stops sending rows (the
    transaction will be rolled back) but keeps draining the checks so that every problem is
    still reported.
    """

    def __init__(self, batches, spill, key_text, problems, chunk_bytes=None):
        self._batches = iter(batches)
        self._spill = spill
        self._key_text = key_text
        self._problems = problems
        self._chunk = chunk_bytes or CHUNK_BYTES
        self._queue = queue.Queue(QUEUE_CHUNKS)
        self._thread = None
        self._stop = False
        self._error = None
        self.rows = 0
        self.bytes = 0

    def _chunks(self):
        md5 = hashlib.md5
        key_text = self._key_text
        while True:
            out, size_now = [], 0
            for lines in self._batches:
                data = [line.encode('utf-8') for line in lines]
                self._spill.write(''.join(['%s\t%s\n' % (md5(item).hexdigest(), key) for item, key in zip(data, map(key_text, lines))]))
                out.extend(data)
                size_now += sum(map(len, data)) + len(data)
                if size_now >= self._chunk:
                    break
            if self._problems.fatal or self._stop:
                for _lines in self._batches:
                    pass
                return
            if not out:
                return
            self.rows += len(out)
            self.bytes += size_now
            out.append(b'')
            yield b'\n'.join(out)

    def _produce(self):
        try:
            for chunk in self._chunks():
                if self._stop:
                    break
                self._queue.put(chunk)
        except BaseException as exc:  # handed to the COPY thread, which re-raises it
            self._error = exc
        finally:
            self._queue.put(None)

    def read(self, size=-1):
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, name='sqlite_to_postgresql-copy')
            self._thread.daemon = True
            self._thread.start()
        chunk = self._queue.get()
        if chunk is None:
            self._queue.put(None)
            if self._error is not None:
                raise self._error
            return b''
        return chunk

    readline = read

    @property
    def error(self):
        """The exception that stopped the producer (reading or checking the source), or None."""
        return self._error

    def close(self):
        """Stop the producer (after an error in COPY) and wait for it."""
        if self._thread is None:
            return
        self._stop = True
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()
        if self._error is not None and not isinstance(self._error, Exception):
            raise self._error


class Comparison(object):
    """Merge of two key-ordered streams of (key, md5): counts and a few examples of differences."""

    def __init__(self, source, columns=None, examples=DIFFERENCE_EXAMPLES):
        self._source = iter(source)
        self._next = next(self._source, None)
        self.columns = columns
        self.limit = examples
        self.matched = self.different = self.only_source = self.only_target = 0
        self.examples = {'different': [], 'only_in_source': [], 'only_in_target': []}

    def _example(self, kind, key, detail=None):
        if len(self.examples[kind]) < self.limit:
            shown = key if not isinstance(key, tuple) else ','.join(str(part) for part in key)
            self.examples[kind].append({'pk': shown, 'columns': detail} if detail is not None else {'pk': shown})

    def target(self, key, digest, line=None):
        nxt = self._next
        if nxt is not None and nxt[0] == key and nxt[1] == digest:
            self.matched += 1
            self._next = next(self._source, None)
            return
        while nxt is not None and nxt[0] < key:
            self.only_source += 1
            self._example('only_in_source', nxt[0])
            nxt = next(self._source, None)
        if nxt is not None and nxt[0] == key:
            if nxt[1] == digest:
                self.matched += 1
            else:
                self.different += 1
                self._example('different', key, _differing_columns(self.columns, nxt[2] if len(nxt) > 2 else None, line))
            nxt = next(self._source, None)
        else:
            self.only_target += 1
            self._example('only_in_target', key)
        self._next = nxt

    def target_batch(self, keys, digests, lines=None):
        """Several target rows at once: a run that matches the next source rows exactly costs two list compares."""
        count = len(keys)
        if self._next is not None and count:
            head = [self._next]
            head.extend(itertools.islice(self._source, count - 1))
            if len(head) == count and list(map(_FIRST, head)) == keys and list(map(_SECOND, head)) == digests:
                self.matched += count
                self._next = next(self._source, None)
                return
            self._source = itertools.chain(head[1:], self._source)
        for key, digest, line in zip(keys, digests, lines or itertools.repeat(None)):
            self.target(key, digest, line)

    def finish(self):
        nxt = self._next
        while nxt is not None:
            self.only_source += 1
            self._example('only_in_source', nxt[0])
            nxt = next(self._source, None)
        self._next = None
        return self

    @property
    def identical(self):
        return not (self.different or self.only_source or self.only_target)

    def summary(self):
        return {'matching_rows': self.matched, 'different_rows': self.different, 'only_in_source': self.only_source,
                'only_in_target': self.only_target, 'examples': dict((k, v) for k, v in self.examples.items() if v)}


def _differing_columns(columns, source_line, target_line):
    if not columns or source_line is None or target_line is None:
        return None
    left, right = source_line.split('\t'), target_line.split('\t')
    return [name for name, a, b in zip(columns, left, right) if a != b]


class MultisetComparison(object):
    """Order-free comparison for tables without a sortable key: count and sum of row checksums."""

    def __init__(self):
        self.source_rows = self.target_rows = 0
        self.source_sum = self.target_sum = 0

    def add_source(self, digest):
        self.source_rows += 1
        self.source_sum = (self.source_sum + int(digest, 16)) % (1 << 128)

    def target(self, key, digest, line=None):
        self.target_rows += 1
        self.target_sum = (self.target_sum + int(digest, 16)) % (1 << 128)

    def target_batch(self, keys, digests, lines=None):
        for digest in digests:
            self.target(None, digest)

    def finish(self):
        return self

    @property
    def identical(self):
        return self.source_rows == self.target_rows and self.source_sum == self.target_sum

    def summary(self):
        return {'source_rows': self.source_rows, 'target_rows': self.target_rows,
                'checksum_sum_match': self.source_sum == self.target_sum, 'compared_as': 'multiset (no sortable key)'}


class TargetSink(object):
    """File-like object for ``COPY (...) TO STDOUT``: feeds the target rows to a comparison in batches.

    psycopg2 calls :meth:`write` once per row; the rows are kept until :data:`SINK_ROWS` have
    arrived and then hashed and handed over together (:meth:`flush`), so a comparison can
    match a whole batch of keys and checksums at once.
    """

    def __init__(self, comparison, spec, keep_lines=False):
        self.comparison = comparison
        self.rows = 0
        self.keep_lines = keep_lines
        idx = [spec.index_of(name) for name in spec.pk]
        self._int_first = idx == [0] and spec.key_kinds()[0] in ('integer', 'bigint', 'smallint')
        self._idx = idx
        self._key_fn = key_function(spec.key_kinds()) if spec.pk else None
        self._pending = []

    def write(self, data):
        if not isinstance(data, bytes):
            data = data.encode('utf-8')
        self._pending.append(data[:-1] if data.endswith(b'\n') else data)
        if len(self._pending) >= SINK_ROWS:
            self.flush()

    def flush(self):
        lines, self._pending = self._pending, []
        if not lines:
            return
        self.rows += len(lines)
        md5 = hashlib.md5
        digests = [md5(line).hexdigest() for line in lines]
        texts = [line.decode('utf-8') for line in lines] if self.keep_lines or not self._int_first else None
        if self._int_first:
            keys = list(map(int, map(_FIRST, map(_SPLIT_FIRST, lines))))
        elif self._key_fn is not None:
            key_fn, idx = self._key_fn, self._idx
            keys = [key_fn([fields[i] for i in idx]) for fields in (text.split('\t') for text in texts)]
        else:
            keys = [None] * len(lines)
        self.comparison.target_batch(keys, digests, texts if self.keep_lines else None)


def spill_source(spill, spec):
    """(key, md5) pairs read back from a spill file, in the order they were written."""
    spill.seek(0)
    kinds = spec.key_kinds()
    if len(kinds) == 1 and kinds[0] in ('integer', 'bigint', 'smallint'):
        for record in spill:
            yield int(record[33:]), record[:32]
        return
    key_fn = key_function(kinds)
    for record in spill:
        digest, _tab, key_text = record.rstrip('\n').partition('\t')
        yield key_fn(key_text.split('\t')), digest


def target_copy_sql(schema, spec):
    cols = ', '.join(quote_ident(col.name) for col in spec.columns)
    sql = 'SELECT %s FROM %s' % (cols, qualified(schema, spec.name))
    if spec.pk:
        sql += ' ORDER BY ' + ', '.join(quote_ident(name) + (' COLLATE "C"' if kind == 'text' else '')
                                        for name, kind in zip(spec.pk, spec.key_kinds()))
    return 'COPY (%s) TO STDOUT' % sql


def stream_target(cur, schema, spec, comparison, keep_lines=False):
    sink = TargetSink(comparison, spec, keep_lines)
    cur.copy_expert(target_copy_sql(schema, spec), sink, size=CHUNK_BYTES)
    sink.flush()
    comparison.finish()
    return sink.rows
