"""Make the checkout importable as the collection ansible_collections.cohort.rollout."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
