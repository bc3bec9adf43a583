"""distill2edge.train"""
