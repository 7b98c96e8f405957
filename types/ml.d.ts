// The ml-* packages ship no TypeScript types; these are the parts of their APIs the CRM uses.
declare module 'ml-logistic-regression';
declare module 'ml-regression';
declare module 'ml-kmeans';
declare module 'ml-cart';
declare module 'ml-naivebayes';
