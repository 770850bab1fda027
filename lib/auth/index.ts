/**
 * express-oci-registry/auth: the Docker registry token protocol. {@link tokenAuthorize} verifies
 * tokens for the registry router; {@link createTokenService} issues them.
 *
 * @packageDocumentation
 */
export { tokenAuthorize, DEFAULT_TOKEN_ALGORITHMS, type TokenAuthorizeOptions, type RegistryTokenClaims } from './authorize';
export { createTokenService, type TokenServiceOptions } from './token-service';
export { basicCredentials } from '../basic-auth';
export { keyIds, libtrustKeyId, type TokenKeys } from './keys';
export { parseScopes, formatScopes, grants, narrow, ANY_ACTION, type ResourceActions } from './scopes';
