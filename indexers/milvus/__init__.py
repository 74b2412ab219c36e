"""The Milvus index backend (``index.backend: milvus``).

Modules: :mod:`~indexers.milvus.index` (the :class:`MilvusIndex` itself),
:mod:`~indexers.milvus.schema` (the collection's layout), :mod:`~indexers.milvus.search`
(per-field searches and their merging), :mod:`~indexers.milvus.hybrid` (native multi-channel
fusion), :mod:`~indexers.milvus.expressions` (filters, id lists and literals as Milvus
expressions) and :mod:`~indexers.milvus.connection` (reaching Milvus). Nothing here imports
pymilvus until an index is created or opened, so the ``milvus`` extras stay optional.
"""
