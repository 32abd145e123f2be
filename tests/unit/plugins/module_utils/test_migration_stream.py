# -*- coding: utf-8 -*-
# Copyright: Contributors to the agent_ui.postgresql collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The key-ordered merge of source and target checksums (migration_stream.Comparison).

The target side arrives in batches (TargetSink.flush); matching a batch at once must count
and report exactly what comparing its rows one by one does, whatever the differences and
wherever the batch boundaries fall.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from hypothesis import given, settings, strategies as st

from ansible_collections.agent_ui.postgresql.plugins.module_utils.migration_stream import Comparison, MultisetComparison

ROWS = st.dictionaries(st.integers(0, 40), st.sampled_from(['a' * 32, 'b' * 32, 'c' * 32]), max_size=30)


def by_row(source, target):
    comparison = Comparison(iter(source), ['id', 'x'])
    for key, digest, line in target:
        comparison.target(key, digest, line)
    return comparison.finish().summary()


def by_batch(source, target, cuts):
    comparison = Comparison(iter(source), ['id', 'x'])
    start = 0
    for cut in sorted(set(cuts)) + [len(target)]:
        part = target[start:cut]
        start = max(start, cut)
        comparison.target_batch([r[0] for r in part], [r[1] for r in part], [r[2] for r in part])
    return comparison.finish().summary()


@settings(max_examples=400, deadline=None)
@given(source_rows=ROWS, target_rows=ROWS, cuts=st.lists(st.integers(0, 30), max_size=6))
def test_batches_compare_like_rows(source_rows, target_rows, cuts):
    source = [(key, digest, '%d\t%s' % (key, digest)) for key, digest in sorted(source_rows.items())]
    target = [(key, digest, '%d\t%s' % (key, digest)) for key, digest in sorted(target_rows.items())]
    assert by_batch(source, target, cuts) == by_row(source, target)


def test_a_difference_inside_a_batch_is_found_and_named():
    source = [(i, 'a' * 32, '%d\tsame' % i) for i in range(10)]
    target = list(source)
    target[6] = (6, 'b' * 32, '6\tchanged')
    summary = by_batch(source, target, [5])
    assert summary['matching_rows'] == 9
    assert summary['different_rows'] == 1
    assert summary['examples'] == {'different': [{'pk': 6, 'columns': ['x']}]}


def test_multiset_batches_add_up():
    comparison = MultisetComparison()
    for digest in ('1' * 32, 'f' * 32):
        comparison.add_source(digest)
    comparison.target_batch([None, None], ['f' * 32, '1' * 32])
    assert comparison.identical
    comparison.target_batch([None], ['1' * 32])
    assert not comparison.identical
