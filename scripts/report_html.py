"""Write the HTML page of a rollout report now: <report>.html beside <report>.json.

  .venv/bin/python scripts/report_html.py [--notifications FILE.jsonl] [REPORT]   (default .sandbox/report.json)

The report writer already does this after every write (in the background); this is for a report
copied elsewhere, or to redraw a page. Exit 0 when written; 2 (and a message naming the file) when
the report cannot be read -- the page is then written anyway and says what it could not read.
The code is the collection's: plugins/module_utils/report_html.py.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'collections'))

from ansible_collections.cohort.rollout.plugins.module_utils import report_html  # noqa: E402

if __name__ == '__main__':
    args = sys.argv[1:]
    if not [a for a in args if not a.startswith('--')] or args[-1] == '--notifications' or (
            len(args) == 2 and args[0] == '--notifications'):
        args.append(os.path.join(ROOT, '.sandbox', 'report.json'))
    sys.exit(report_html.main(args))
