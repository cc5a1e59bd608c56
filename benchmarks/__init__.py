"""Side-by-side benchmarks of aisetl's servers and the reference SDK's (``make bench``)."""
