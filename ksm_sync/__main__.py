"""`python -m ksm_sync`: the same as the ksm-sync command."""

from ksm_sync.cli import main

main()
