"""`make bench`: ksm-sync against two real control planes, measured against a minimal client.

A figure alone says little on a shared 2-core machine; the floor (the same requests sent
by plain HTTP + JSON, in the same run, against the same servers) is what it is judged by.
"""
