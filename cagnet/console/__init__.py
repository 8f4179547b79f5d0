"""`cagnet console`: the CAG's joint queries, results, bundles, register and feeds in a browser on
this machine, for a person holding a kit (a CAG chair, a regional board) or a member authority's
officer (its node's folder, with the node's imports, audit log and completeness pages).

It is thin: every page calls the same plain functions the command line calls (`cagnet/actions/`), and
the kit's or node's keys never leave the process (see app.py for who is let in).
"""
