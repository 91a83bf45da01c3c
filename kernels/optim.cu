// PLACEHOLDER
extern "C" int ddx_placeholder_optim(void) { return 0; }
