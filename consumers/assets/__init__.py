"""Cross-venue asset snapshots: one record per asset, window and snapshot time that lines up
the per-symbol snapshots of every venue listing the asset (docs/assets.md).

``keys`` maps a venue's symbol to its asset (lots such as ``1000PEPE`` and ``kPEPE``
folded); ``engine`` is the pure, exact aggregation of MarketSnapshot rows into
AssetSnapshot records.
"""
