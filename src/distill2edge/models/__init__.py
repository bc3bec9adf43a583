"""distill2edge.models"""
