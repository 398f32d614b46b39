"""Coupons and promo codes: code generation, the terms a coupon carries, why a coupon is
or is not accepted at the till, and the words a customer reads about it."""
