"""distill2edge.losses"""
