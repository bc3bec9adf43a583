"""distill2edge.cli"""
