"""distill2edge.data"""
