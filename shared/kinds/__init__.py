"""The joint query kinds: the registry (`registry`) and the pure functions that combine the nodes'
signed answers into each joint result. No transport here: nothing in this package imports grpc.
"""
