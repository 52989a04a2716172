"""The per-language MultiPL-E table of an instruction model sits beside the Stable Code Instruct 3B card's rows
(REFERENCE §2), not the base model's; the base model's table is unchanged."""
import json
from stablecode.eval import (MULTIPLE_TABLE_LANGS, REFERENCE_MULTIPLE_INSTRUCT, TaskResult, markdown_table, per_language,
                             write_report)


def _task(task, lang, passed):
    return TaskResult(task, lang, 1, len(passed), {'pass@1': sum(passed) / len(passed)},
                      [dict(task_id=f'{task}/{i}', n=1, passed=p, statuses={}) for i, p in enumerate(passed)], {})


SIX = {'multiple-py': ('python', [1, 1, 0, 0]), 'multiple-cpp': ('cpp', [1, 0, 0, 0]), 'multiple-js': ('javascript', [1, 1, 1, 0]),
       'multiple-java': ('java', [0, 0, 0, 0]), 'multiple-php': ('php', [1, 1, 1, 1]), 'multiple-rs': ('rust', [1, 0, 1, 0])}


def test_instruct_table_beside_the_instruct_card(tmp_path):
    tables = {k: _task(k, lang, p) for k, (lang, p) in SIX.items()}
    tables['humaneval'] = _task('humaneval', 'python', [0, 0])       # not MultiPL-E: not in the per-language row
    md = markdown_table(tables, 'sft+dpo', instruct=True)
    # ours: 50, 25, 75, 0, 100, 50 and their mean 50.0
    assert '| sft+dpo | 50.0 | 50.0 | 25.0 | 75.0 | 0.0 | 100.0 | 50.0 |' in md
    for row in ('| Stable Code Instruct 3B (DPO) (card) | 47 | 59 | 49 | 49 | 44 | 45 | 37 |',
                '| Stable Code Instruct 3B (SFT) (card) | 44 | 55 | 45 | 42 | 42 | 44 | 32 |',
                '| DeepSeek-Coder Instruct 1.3B (card) | 44 | 52 | 52 | 41 | 46 | 45 | 28 |',
                '| CodeLlama Instruct 7B (card) | 30 | 33 | 31 | 31 | 29 | 31 | 25 |'):
        assert row in md
    assert 'Stable Code 3B (report)' not in md and 'REFERENCE §2' in md
    base = markdown_table(tables, 'base')
    assert '| Stable Code 3B (report) | 32.4 | 30.9 | 32.1 | 32.1 | 24.2 | 23.0 |' in base and '(card)' not in base
    assert '| base | 50.0 | 25.0 | 75.0 | 0.0 | 100.0 | 50.0 |' in base
    # the files of the report say which card they compare with
    paths = write_report(tables, tmp_path, 'sft+dpo', instruct=True)
    assert paths['md'].read_text().count('(card)') == 4
    assert json.loads(paths['json'].read_text())['reference'].startswith('Stable Code Instruct 3B card')
    assert json.loads(write_report(tables, tmp_path / 'b', 'base')['json'].read_text())['reference'].startswith('Stable Code 3B report')


def test_instruct_average_needs_all_six_languages():
    tables = {'multiple-py': _task('multiple-py', 'python', [1, 0])}
    assert '| m | – | 50.0 | – | – | – | – | – |' in markdown_table(tables, 'm', instruct=True)
    assert set(per_language(tables)) == {'python'}


def test_card_average_is_the_mean_of_its_six_languages():
    "The card's Avg column agrees with its six languages (to its two-digit rounding): ours is computed the same way."
    for m, row in REFERENCE_MULTIPLE_INSTRUCT.items():
        assert abs(sum(row[l] for l in MULTIPLE_TABLE_LANGS) / 6 - row['avg']) <= 0.7, m
