// PLACEHOLDER
extern "C" int ddx_placeholder_k_attention(void) { return 0; }
