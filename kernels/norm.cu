// PLACEHOLDER
extern "C" int ddx_placeholder_k_norm(void) { return 0; }
