"""distill2edge.report"""
