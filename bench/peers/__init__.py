"""Model servers a user would pick instead of ours, each serving the same ONNX generator for the same work
(``n`` images of a label from a seed, by the contract's seed rule). They run in their own virtual
environments (their pins clash with ours), never imported by the tests; ``bench/peer_load.py`` drives them.
"""
