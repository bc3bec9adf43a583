"""distill2edge.bench"""
