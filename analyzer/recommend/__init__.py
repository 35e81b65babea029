"""The recommender: right-sizing, power caps, rebalancing and packing."""
