"""distill2edge.evaluate"""
