"""nacento-sync: sync Magento 2 product image galleries from a PIM export, using S3 ETags."""

__version__ = "0.2.0"
