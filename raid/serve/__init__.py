"""The HTTP detection service (`raid serve`): LitServe workers around one loaded
`DetectorPipeline`, bounded uploads, a versioned JSON API and a self-contained web page."""
