"""distill2edge.export"""
